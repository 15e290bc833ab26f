"""`nonn bench --k 2,4,8 --link ...`: the case study once per K, and how total latency and the split / NoNN ratio
move with K and the link. Each K's full outputs go to OUT/k<K>/; OUT/bench.json, bench.md and plots/sweep_*.png
hold the comparison."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from .. import atomic
from ..errors import ConfigError
from .analysis import TARGETS

SWEEP_FORMAT = 1
SPLITS = ("compressed_split", "teacher_split")


def parse_ks(text) -> list[int]:
    """--k as one K or a comma-separated list, each at least 1, in the order given, without repeats."""
    try:
        ks = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--k takes a whole number or a comma-separated list such as 2,4,8, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k values must be at least 1, got {text!r}")
    return list(dict.fromkeys(ks))


def _row(k: int, link: str, run: dict, cpus: int) -> dict:
    deps = run["deployments"]
    processes = sum(len(d["nodes"]) for d in deps.values() if not d.get("shares_processes_with"))
    widest = max(len(d["nodes"]) for d in deps.values())  # the nodes one inference keeps busy at once
    row = {"k": k, "link": link, "node_processes": processes, "cpu_count": cpus,
           "cores_shared": widest > cpus, "deployments": {}}
    for name, d in deps.items():
        f = d["floor"]
        compute = f["compute_ms"]
        row["deployments"][name] = {
            "total_ms": d["total_ms"]["p50"], "compute_ms": compute,
            "link_and_runtime_ms": d["total_ms"]["p50"] - compute, "floor_ms": f["ms"],
            "measured_over_floor": f["measured_over_floor"]}
    row["ratios"] = {}
    for base in SPLITS:
        for hop in ("", "_pixels"):
            a, b = deps.get(base + hop), deps.get("nonn" + hop)
            if a and b:
                row["ratios"][f"{base}{hop}"] = a["total_ms"]["p50"] / b["total_ms"]["p50"]
                row["ratios"][f"{base}{hop}_link_only"] = (
                    (a["total_ms"]["p50"] - a["floor"]["compute_ms"]) / (b["total_ms"]["p50"] - b["floor"]["compute_ms"])
                    if b["total_ms"]["p50"] > b["floor"]["compute_ms"] else None)
    return row


def summarise(per_k: dict[int, dict]) -> dict:
    """The sweep's table and whether any K and link reach the paper's total-latency ratio."""
    rows = []
    for k, result in per_k.items():
        cpus = result["config"]["cpu_count"]
        for link, run in result["runs"].items():
            rows.append(_row(k, link, run, cpus))
    target = TARGETS["total_latency"]
    reached = [{"k": r["k"], "link": r["link"], "ratio": key, "value": v} for r in rows
               for key, v in r["ratios"].items() if v is not None and v >= target and not key.endswith("_link_only")]
    return {"target": target, "rows": rows, "reached": reached}


def write_outputs(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "bench.json", result)
    result["plots"] = [str(p) for p in write_plots(result, out / "plots")]
    atomic.write_text(out / "bench.md", format_markdown(result))
    atomic.write_json(out / "bench.json", result)


def sweep(ks, *, teacher_arch: str, student_arch: str, out=None, log=print, **kwargs) -> dict:
    """The architecture-form case study for every K in ``ks`` (same links, devices, requests), then the sweep's
    comparison."""
    from .case_study import bench

    ks = parse_ks(",".join(map(str, ks)) if not isinstance(ks, str) else ks)
    out = Path(out) if out else Path("runs") / f"bench-{teacher_arch}-{student_arch}-k{'-'.join(map(str, ks))}"
    per_k, paths = {}, {}
    for k in ks:
        log(f"[bench] sweep: K={k}")
        per_k[k] = bench(teacher_arch=teacher_arch, student_arch=student_arch, k=k, out=out / f"k{k}", log=log,
                         **kwargs)
        paths[k] = str(out / f"k{k}" / "bench.json")
    first = per_k[ks[0]]
    result = {
        "format": SWEEP_FORMAT, "form": "sweep",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "untrained": first["untrained"], "note": first["note"], "out": str(out),
        "config": {"ks": ks, "teacher_arch": teacher_arch, "student_arch": student_arch,
                   "links": first["config"]["links"], "devices": first["config"]["devices"],
                   "requests": first["config"]["requests"], "shaping": first["config"]["shaping"],
                   "cpu_count": os.cpu_count() or 1,
                   "pinning": {k: per_k[k]["config"]["pinning"] for k in ks}},
        "per_k": paths,
        "compressed_arch": {k: per_k[k]["config"]["compressed_arch"] for k in ks},
        "split_rule": first["layer_split"]["rule"],
        **summarise(per_k),
    }
    write_outputs(result, out)
    return result


def _x(v) -> str:
    return "n/a" if v is None else (f"{v:.2f}x" if v < 1 else f"{v:.1f}x")


def _ms(v) -> str:
    return "n/a" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.0f}")


def format_markdown(result: dict) -> str:
    cfg = result["config"]
    out = [f"# NoNN case study across K: {cfg['teacher_arch']} teacher, {cfg['student_arch']} students, "
           f"K = {', '.join(map(str, cfg['ks']))}", "", f"**{result['note']}**", "",
           f"Links {', '.join(cfg['links'])}; shaping `{cfg['shaping']['mode']}`; {cfg['cpu_count']} CPU cores on "
           "this machine. Every node is its own process; when a K's deployments have more node processes than "
           "cores, **nodes share cores** (see the processes column), so compute times there include waiting for "
           "a core. Deployments are measured in interleaved rounds, one inference at a time, so the processes of "
           "the others are idle meanwhile; 'shared' marks a K whose own deployments have more nodes than cores. "
           "Compute (the nodes' median ONNX Runtime time on the critical path: the slowest NoNN student, "
           "the sum of a chain's pieces) is reported apart from the rest (link transfer, delay and runtime).", "",
           f"Split rule: {result['split_rule']}. Compressed model per K: "
           + ", ".join(f"K={k} {a}" for k, a in result["compressed_arch"].items()) + ".", ""]
    header = ["K", "link", "processes / cores", "NoNN total ms (compute)", "NoNN uint8 total ms", "NoNN int8 ms",
              "compressed split ms (compute)", "compressed split uint8 ms", "teacher split ms (compute)",
              "compressed split / NoNN", "same, uint8 first hop", "teacher split / NoNN", "NoNN measured / floor"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in result["rows"]:
        d = r["deployments"]

        def cell(name, compute=False):
            if name not in d:
                return "n/a"
            return _ms(d[name]["total_ms"]) + (f" ({_ms(d[name]['compute_ms'])})" if compute else "")

        lines.append("| " + " | ".join([
            str(r["k"]), r["link"], f"{r['node_processes']} / {r['cpu_count']}" + (" shared" if r["cores_shared"] else ""),
            cell("nonn", True), cell("nonn_pixels"), cell("nonn_int8"), cell("compressed_split", True),
            cell("compressed_split_pixels"), cell("teacher_split", True), _x(r["ratios"].get("compressed_split")),
            _x(r["ratios"].get("compressed_split_pixels")), _x(r["ratios"].get("teacher_split")),
            _x(d["nonn"]["measured_over_floor"])]) + " |")
    out += lines + [""]
    if result["reached"]:
        out += [f"The paper's {result['target']:g}x is reached by: " + "; ".join(
            f"K={x['k']} {x['link']} {x['ratio']} ({x['value']:.1f}x)" for x in result["reached"]) + ".", ""]
    else:
        best = max(((r["ratios"].get("compressed_split") or 0, r["k"], r["link"]) for r in result["rows"]),
                   default=(0, None, None))
        out += [f"No K and link reaches the paper's {result['target']:g}x (split / NoNN); the largest is "
                f"{best[0]:.1f}x (K={best[1]}, {best[2]}).", ""]
    out += ["Each K's full tables (per node, the floor, link calibration): "
            + ", ".join(f"[K={k}](k{k}/bench.md)" for k in cfg["ks"]) + ".", ""]
    if result.get("plots"):
        out += [f"![{Path(p).stem}](plots/{Path(p).name})" for p in result["plots"]]
    return "\n".join(out) + "\n"


def write_plots(result: dict, folder: Path) -> list[Path]:
    """Total latency against K per link (NoNN and the splits), and the split / NoNN ratio with the paper's 33x."""
    from .report import _figure

    folder.mkdir(parents=True, exist_ok=True)
    links = result["config"]["links"]
    rows = result["rows"]
    styles = {"nonn": ("#1b9e77", "-"), "nonn_pixels": ("#1b9e77", "--"), "nonn_int8": ("#a6761d", ":"),
              "compressed_split": ("#66a61e", "-"), "compressed_split_pixels": ("#66a61e", "--"),
              "teacher_split": ("#e7298a", "-")}
    paths = []
    fig = _figure(4.5 * len(links), 4.2)
    axes = fig.subplots(1, len(links), squeeze=False)[0]
    for ax, link in zip(axes, links):
        mine = [r for r in rows if r["link"] == link]
        for name, (color, style) in styles.items():
            pts = [(r["k"], r["deployments"][name]["total_ms"]) for r in mine if name in r["deployments"]]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=color, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("K (devices)")
        ax.set_ylabel("median total latency (ms)")
        ax.set_title(f"total latency vs K: {link}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(folder / "sweep_total_latency.png")
    fig.savefig(paths[-1])

    fig = _figure(7, 4.5)
    ax = fig.subplots()
    for link in links:
        mine = [r for r in rows if r["link"] == link]
        for key, style in (("compressed_split", "-"), ("compressed_split_pixels", "--"), ("teacher_split", ":")):
            pts = [(r["k"], r["ratios"][key]) for r in mine if r["ratios"].get(key)]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", label=f"{key} / nonn, {link}")
    ax.axhline(result["target"], color="red", lw=1)
    ax.text(ax.get_xlim()[0], result["target"] * 1.05, f"paper: {result['target']:g}x", color="red", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("K (devices)")
    ax.set_ylabel("split total latency / NoNN total latency")
    ax.set_title("how much slower a layer split is than NoNN")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(folder / "sweep_ratio.png")
    fig.savefig(paths[-1])
    return paths
