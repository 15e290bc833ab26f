"""bench.json as Markdown and PNG plots (matplotlib's Agg canvas, no pyplot)."""

from __future__ import annotations

from pathlib import Path

BASE = ("nonn", "teacher", "compressed", "teacher_split", "compressed_split")
ORDER = BASE + ("nonn_int8",)  # deployments with processes of their own (per-node tables and plots)
LATENCY_ORDER = tuple(x for b in BASE for x in (b, b + "_pixels")) + ("nonn_int8",)
COLORS = {"nonn": "#1b9e77", "teacher": "#d95f02", "compressed": "#7570b3", "teacher_split": "#e7298a",
          "compressed_split": "#66a61e", "nonn_int8": "#a6761d"}


def _present(names, deps: dict) -> list[str]:
    return [n for n in names if n in deps]


def method(min_samples: int, tbf_burst_bytes: int) -> list[str]:
    """How `nonn bench` measures, as the bullet points of bench.md's Method section (kept in bench.json too)."""
    return [
        "Every deployment is served by separate `python -m nonn.edge node` processes (ONNX Runtime, 1 intra-op "
        "thread); NoNN also by `nonn.edge gateway`, which normalises the image, sends it to the K nodes at once "
        "and runs the head.",
        "The hub (this process and the gateway) is the access point: the input starts there and answers end "
        "there. A layer-split pipeline is driven node after node; each activation crosses two links.",
        "Deployments are measured in interleaved rounds in one process set per link; each stops after "
        "--requests samples, or after --max-seconds of its own time once it has at least "
        f"{min_samples}. Figures are medians.",
        "Per-node compute is the node's own ONNX Runtime time (reported by the node). Per-node energy = device "
        "active power x median compute time + energy per bit x bits sent and received (message bytes plus the "
        "link's per-message overhead); idle power while waiting is not counted. The device profiles' powers "
        "are multiplied by compute times measured on THIS machine, not on those devices.",
        "Weight memory is parameters x 4 bytes (float32) per node, and for int8 students the bytes of the "
        "quantized graph's constants; peak RSS is the node process's VmHWM "
        "(Python, gRPC and ONNX Runtime included).",
        "hub_overhead_ms is the total minus the node round trips: for NoNN the client -> gateway hop and the "
        "gateway's own work (decode, normalise, fan out, gather, head), for a chain the driver's work between "
        "hops. It is part of every total.",
        "A probe node on the same kind of link, serving a sink model, calibrates what one message of each size "
        "costs one way (link_calibration); the input_local and direct_chain variants subtract those measured "
        "costs.",
        f"tbf passes up to {tbf_burst_bytes} bytes at line rate after the link was idle, so a message smaller "
        "than that costs little more than the delay; on a slow link (BLE, 100 kbit/s: 128 ms worth) this makes "
        "small messages such as NoNN's features nearly free and the input_local ratios there very large "
        "(a small remainder after subtracting the image's transfer). The in-process mode has no burst.",
        "Each node has its own link (no shared medium): NoNN's K image transfers run in parallel, as they would "
        "with K radios or one broadcast, not one after the other as on one shared Wi-Fi channel.",
    ]


def _mb(n) -> str:
    return "n/a" if n is None else f"{n / 1e6:.2f} MB"


def _x(v) -> str:
    return "n/a" if v is None else (f"{v:.2f}x" if v < 1 else f"{v:.1f}x")


def _ms(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.1f}")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _node_label(name: str, node: dict) -> str:
    if name in ("teacher", "compressed"):
        return f"{name} (one device)"
    return f"{name} {node['role']}"


def _int8_table(result: dict) -> list[str]:
    """fp32 and int8 students side by side against the teacher (first link's run)."""
    run = next(iter(result["runs"].values()))
    deps = run["deployments"]
    if "nonn_int8" not in deps:
        return []
    teacher = deps["teacher"]["nodes"][0]
    models = result["models"]
    acc = {"fp32": models["nonn"].get("accuracy_fp32_onnx"), "int8": models["nonn"].get("accuracy_int8")}
    rows = []
    for label, name in (("teacher (one device)", "teacher"), ("NoNN fp32 student", "nonn_pixels"),
                        ("NoNN int8 student", "nonn_int8")):
        nodes = deps[name]["nodes"]
        big = max(nodes, key=lambda n: n["weight_bytes"])
        slow = max(n["compute_ms"]["p50"] for n in nodes)
        rss = [n["peak_rss_bytes"] for n in nodes]
        dev = result["config"]["devices"][0]
        energy = max(n["energy_j"][dev]["total_j"] for n in nodes)
        a = {"teacher": models["teacher"].get("accuracy"), "nonn_pixels": acc["fp32"], "nonn_int8": acc["int8"]}[name]
        rows.append([label, _mb(big["weight_bytes"]), _x(teacher["weight_bytes"] / big["weight_bytes"]),
                     _mb(max(rss) if all(rss) else None), _ms(slow), f"{1e3 * energy:.3f}",
                     "n/a" if a is None else f"{100 * a:.2f}%"])
    return ["## int8 and fp32 students against the teacher (per node, largest / slowest node)", ""] + _table(
        ["model", "weights", "teacher / this", "peak RSS", "compute p50 ms", f"energy mJ ({dev})",
         "test accuracy (ONNX Runtime)"], rows) + [
        "", "int8 weights are the bytes of the quantized graph's constants (int8 weights, float scales, int32 "
            "biases); float32 weights are parameters x 4. Both NoNN rows receive uint8 pixels.", ""]


def format_markdown(result: dict) -> str:
    cfg, models = result["config"], result["models"]
    out = [f"# NoNN case study: {cfg['teacher_arch']} teacher vs K={cfg['k']} x "
           f"{', '.join(sorted(set(cfg['student_archs'])))} students", ""]
    out += [f"**{result['note']}**", "",
            f"Input {'x'.join(map(str, cfg['input_shape']))}; links {', '.join(cfg['links'])}; device profiles "
            f"{', '.join(cfg['devices'])}; {cfg['cpu_count']} CPU cores; {cfg['pinning']}; ONNX Runtime with "
            f"{cfg['ort_threads']} intra-op thread per node; {cfg['security']}.", "",
            f"**Link shaping: `{cfg['shaping']['mode']}`** ({cfg['shaping']['reason']}): "
            f"{cfg['shaping']['description']}.", ""]

    out += ["## Headline (the paper's claims against this run)", ""]
    rows = []
    for link, claims in result["headline"].items():
        for claim, row in claims.items():
            rows.append([link, claim, _x(row["value"]), f">= {row['target']:g}x", "yes" if row["met"] else "NO"])
    out += _table(["link", "comparison", "measured", "paper", "met"], rows) + [""]

    out += _int8_table(result)
    out += ["## Models", ""]
    t, n, c = models["teacher"], models["nonn"], models["compressed"]

    def acc(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    rows = [[f"teacher {t['arch']}", f"{t['params']:,}", _mb(t["weight_bytes"]), f"{t['macs']:,}", acc(t["accuracy"])],
            [f"NoNN {n['k']} students", f"{n['students_params_total']:,} (+ head {n['head']['params']:,})",
             _mb(n["students_params_total"] * 4), "", acc(n["accuracy"])],
            [f"compressed {c['arch']} ({c['training']})", f"{c['params']:,}", _mb(c["weight_bytes"]),
             f"{c['macs']:,}", acc(c["accuracy"])]]
    out += _table(["model", "params", "weights", "MACs", "accuracy"], rows)
    out += ["", f"Compressed model chosen from family `{c['choice']['family']}`: {c['choice']['rule']} "
            f"(target {c['choice']['target_params']:,}; {c['choice']['note']}).", ""]
    if models.get("accuracy_on"):
        out += [f"Accuracy on the {models['accuracy_on']} (from the runs' metrics.json).", ""]

    out += ["## Layer-split baselines", ""]
    rows = []
    for name, plan in result["layer_split"].items():
        if not isinstance(plan, dict):
            continue
        for p in plan["pieces"]:
            rows.append([name, str(p["index"]), f"{p['layer_names'][0]} .. {p['layer_names'][-1]}",
                         f"{p['params']:,}", _mb(p["weight_bytes"]), f"{p['out_bytes']:,}"])
        out.append(f"- {name}: split after {', '.join(plan['split_after']) or '(one piece)'}; bytes over each cut "
                   f"{plan['cut_bytes']}")
    out += [""] + _table(["model", "piece", "layers", "params", "weights", "bytes out"], rows)
    out += ["", f"Rule: {result['layer_split']['rule']}. Parity of every exported deployment with PyTorch "
            f"(max |diff| of logits): " + ", ".join(f"{k} {v:.1e}" for k, v in result["parity"].items()
                                                   if isinstance(v, float) and k != "atol")]
    int8 = result["parity"].get("nonn_int8_vs_fp32")
    if int8:
        out[-1] += (f". int8 students against float32 on the same images: largest logit change "
                    f"{int8['max_abs_logit_change']:.3g}, labels agree on {100 * int8['label_agreement']:.1f}%")
    out += [""]

    for link, run in result["runs"].items():
        deps = run["deployments"]
        out += [f"## Link `{link}` ({run['link']['rate_bps'] / 1e6:g} Mbit/s, {run['link']['delay_ms']:g} ms per "
                f"message, shaping `{run['shaping']}`)", ""]
        rows = []
        for name in _present(LATENCY_ORDER, deps):
            d = deps[name]
            rows.append([d["title"], str(d["samples"]), _ms(d["total_ms"]["p50"]), _ms(d["total_ms"]["p90"]),
                         _ms(d["hub_overhead_ms"]["p50"]), f"{d['link_bytes_per_inference']:,}",
                         _ms(d["derived_total_ms"]["input_local"]), _ms(d["derived_total_ms"]["direct_chain"])])
        out += _table(["deployment", "n", "total p50 ms", "p90 ms", "hub ms", "link bytes", "input local ms",
                       "direct chain ms"], rows) + [""]
        cal = run["link_calibration"]
        rows = [[key, f"{v['message_bytes']:,}", str(v["samples"]), _ms(v["one_way_ms"]), _ms(v["modelled_one_way_ms"])]
                for key, v in cal.items() if isinstance(v, dict)]
        out += ["Link calibration (probe node, same link): " + cal["method"] + ".", ""]
        out += _table(["message", "bytes", "n", "measured one way ms", "modelled one way ms"], rows) + [""]
        devices = result["config"]["devices"]
        rows = []
        for name in _present(ORDER, deps):
            for node in deps[name]["nodes"]:
                rows.append([_node_label(name, node), _mb(node["weight_bytes"]), _mb(node["peak_rss_bytes"]),
                             _ms(node["compute_ms"]["p50"]), f"{node['bytes_in']:,}", f"{node['bytes_out']:,}"]
                            + [f"{1e3 * node['energy_j'][dev]['total_j']:.3f}" for dev in devices])
        out += _table(["node", "weights", "peak RSS", "compute p50 ms", "bytes in", "bytes out"]
                      + [f"energy mJ ({dev})" for dev in devices], rows) + [""]
        r = run["ratios"]
        rows = [["weight memory", _x(r["weight_memory"]["value"]), r["weight_memory"]["of"]],
                ["peak RSS", _x(r["peak_rss"]["value"]), r["peak_rss"]["of"]],
                ["compute", _x(r["compute"]["value"]), r["compute"]["of"]]]
        for dev in devices:
            rows.append([f"energy {dev}", _x(r["energy"][dev]["value"]), "with the input image received"])
            rows.append([f"energy {dev}, input local", _x(r["energy_input_local"][dev]["value"]),
                         "without receiving the input image"])
        for baseline, variants in r["total_latency"].items():
            for variant, ratio in variants.items():
                rows.append([f"total latency {baseline} / NoNN ({variant})", _x(ratio["value"]),
                             f"{_ms(ratio['numerator'])} / {_ms(ratio['denominator'])} ms"])
        for baseline, ratio in r.get("total_latency_pixels", {}).items():
            rows.append([f"total latency {baseline} / NoNN, uint8 pixels on every first hop", _x(ratio["value"]),
                         f"{_ms(ratio['numerator'])} / {_ms(ratio['denominator'])} ms"])
        for key, ratio in r.get("int8", {}).items():
            rows.append([f"int8: {key}", _x(ratio["value"]), ratio["of"]])
        out += _table(["per node vs teacher / total", "ratio", "of"], rows) + [""]
        rows = [[deps[name]["title"], _ms(f["measured_ms"]), _ms(f["ms"]), _ms(f["transfer_ms"]), _ms(f["delay_ms"]),
                 _ms(f["compute_ms"]), _x(f["measured_over_floor"])]
                for name in _present(LATENCY_ORDER, deps) for f in [deps[name]["floor"]]]
        out += ["Physical floor: " + deps["nonn"]["floor"]["bytes"] + "; NoNN: " + deps["nonn"]["floor"]["rule"]
                + "; a chain: " + deps["teacher_split"]["floor"]["rule"] + ".", ""]
        out += _table(["deployment", "measured p50 ms", "floor ms", "transfer ms", "delay ms", "compute ms",
                       "measured / floor"], rows) + [""]
        load = run.get("load_average")
        if load:
            out += [f"Load average (1 min) before this link's run: {load['before'][0]:.2f}, after: "
                    f"{load['after'][0]:.2f} on {result['config']['cpu_count']} cores (other work on the machine "
                    "perturbs the figures).", ""]
        rapl = run["rapl"]
        out += [f"RAPL: {rapl['reason']}" + (f"; J/inference {rapl.get('joules_per_inference')}" if rapl["available"]
                                             else ""), ""]
    out += ["## Latency variants", ""] + [f"- `{k}`: {v}" for k, v in result["latency_variants"].items()]
    out += ["", "## Method", ""] + [f"- {m}" for m in result["method"]]
    if result.get("plots"):
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}](plots/{Path(p).name})" for p in result["plots"]]
    return "\n".join(out) + "\n"


def _figure(width=9.0, height=4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _nodes(run: dict) -> list[tuple[str, dict]]:
    return [(name, node) for name in _present(ORDER, run["deployments"]) for node in run["deployments"][name]["nodes"]]


def _bars(ax, labels, values, colors, ylabel, log=True):
    xs = range(len(values))
    ax.bar(xs, [v if v else 0 for v in values], color=colors)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    if log and any(v and v > 0 for v in values):
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def write_plots(result: dict, folder: Path) -> list[Path]:
    """memory, compute and energy per node (first link's run), and total latency per link and deployment."""
    folder.mkdir(parents=True, exist_ok=True)
    first = next(iter(result["runs"]))
    run = result["runs"][first]
    nodes = _nodes(run)
    labels = [_node_label(n, node) for n, node in nodes]
    colors = [COLORS[n] for n, _ in nodes]
    paths = []

    fig = _figure(10, 4.5)
    ax1, ax2 = fig.subplots(1, 2)
    _bars(ax1, labels, [node["weight_bytes"] / 1e6 for _, node in nodes], colors, "weights (MB, float32)")
    ax1.set_title("weight memory per node")
    _bars(ax2, labels, [(node["peak_rss_bytes"] or 0) / 1e6 for _, node in nodes], colors, "peak RSS (MB)")
    ax2.set_title("node process peak RSS")
    fig.tight_layout()
    paths.append(folder / "bench_memory_per_node.png")
    fig.savefig(paths[-1])

    fig = _figure(7, 4.5)
    ax = fig.subplots()
    _bars(ax, labels, [node["compute_ms"]["p50"] for _, node in nodes], colors, "median compute (ms)")
    ax.set_title(f"compute latency per node (this machine, link {first})")
    fig.tight_layout()
    paths.append(folder / "bench_compute_per_node.png")
    fig.savefig(paths[-1])

    devices = result["config"]["devices"]
    fig = _figure(5 * len(devices), 4.5)
    axes = fig.subplots(1, len(devices), squeeze=False)[0]
    for ax, dev in zip(axes, devices):
        xs = list(range(len(nodes)))
        comp = [1e3 * node["energy_j"][dev]["compute_j"] for _, node in nodes]
        comm = [1e3 * node["energy_j"][dev]["comm_j"] for _, node in nodes]
        ax.bar(xs, comp, color=colors, label="compute")
        ax.bar(xs, comm, bottom=comp, color="#999999", label="radio (tx + rx)")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel("energy per inference (mJ)")
        ax.set_yscale("log")
        ax.set_title(f"energy per node: {dev}, {first}")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(folder / "bench_energy_per_node.png")
    fig.savefig(paths[-1])

    links = list(result["runs"])
    fig = _figure(max(6, 2.5 * len(links) + 3), 4.5)
    ax = fig.subplots()
    order = _present(LATENCY_ORDER, result["runs"][links[0]]["deployments"])
    width = 0.8 / len(order)
    for j, name in enumerate(order):
        values = [result["runs"][link]["deployments"][name]["total_ms"]["p50"] for link in links]
        ax.bar([i + (j - len(order) / 2 + 0.5) * width for i in range(len(links))], values, width,
               color=COLORS[name.removesuffix("_pixels")], hatch="//" if name.endswith("_pixels") else None, label=result["runs"][links[0]]["deployments"][name]["title"])
    ax.set_xticks(list(range(len(links))))
    ax.set_xticklabels(links)
    ax.set_yscale("log")
    ax.set_ylabel("median total latency per inference (ms)")
    ax.set_title("total latency per inference")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(folder / "bench_total_latency.png")
    fig.savefig(paths[-1])
    return paths


def format_summary(result: dict) -> str:
    """A few terminal lines: the headline per link and the shaping mode."""
    cfg = result["config"]
    lines = [f"bench  {cfg['teacher_arch']} vs {cfg['k']} x {', '.join(sorted(set(cfg['student_archs'])))}; "
             f"compressed {cfg['compressed_arch']}; input {'x'.join(map(str, cfg['input_shape']))}",
             f"  {result['note']}",
             f"  link shaping: {cfg['shaping']['mode']} ({cfg['shaping']['reason']})"]
    for link, run in result["runs"].items():
        deps = run["deployments"]
        lines.append(f"  {link}: median total ms  " + "  ".join(
            f"{name} {_ms(deps[name]['total_ms']['p50'])}" for name in _present(LATENCY_ORDER, deps)))
        for claim, row in result["headline"][link].items():
            lines.append(f"    {claim:<48} {_x(row['value']):>8}  (paper >= {row['target']:g}x: "
                         f"{'met' if row['met'] else 'MISSED'})")
    return "\n".join(lines)
