"""`nonn ablate`: what each part of NoNN contributes, on the same data, teacher and seeds.

Variants: the Activation-Hub partition (ah), the co-activation partition (coact), a random partition of the
same sizes (random), NoNN without the attention-transfer term (no-at), one student of the same per-device size
trained with KD alone (kd), and the teacher; over K and the partition threshold percentile, for several seeds.
Every run is an ordinary run directory under OUT, so an interrupted ablation resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic
from .config import Config, load_config
from .errors import ConfigError
from .pipeline import init_run, run_all, run_stage

VARIANTS = ("ah", "coact", "random", "no-at", "kd")


@dataclass
class AblationPlan:
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    percentiles: list[float] = field(default_factory=lambda: [90.0, 95.0, 99.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown ablation variant(s) {unknown}; choose from: {', '.join(VARIANTS)}")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError("--k takes a comma-separated list of K >= 1, e.g. 1,2,4,8")
        if not self.seeds:
            raise ConfigError("--seeds takes a comma-separated list of integers, e.g. 0,1,2")

    def runs(self) -> list[tuple[str, int, float | None, dict]]:
        """(variant, K, percentile or None, overrides) for every distinct configuration.

        K = 1 has a single group, so every partition rule gives the same NoNN: it runs once (as ah). The
        threshold sweep runs at the smallest K above 1; other K use the largest percentile listed.
        """
        default_pct = max(self.percentiles)
        sweep_k = min((k for k in self.ks if k > 1), default=None)
        out = []
        for k in sorted(set(self.ks)):
            for v in self.variants:
                if v == "kd" or (k == 1 and v != "ah"):
                    continue
                over: dict = {"students.k": k, "partition.threshold_percentile": default_pct}
                if v == "random":
                    over["partition.rule"] = "random"
                elif v == "no-at":
                    over["students.beta"] = 0.0
                else:
                    over["partition.rule"] = v
                if v in ("ah", "coact") and k == sweep_k:
                    for pct in sorted(self.percentiles):
                        out.append((v, k, pct, {**over, "partition.threshold_percentile": pct}))
                else:
                    out.append((v, k, default_pct if v in ("ah", "coact") and k > 1 else None, over))
        if "kd" in self.variants:
            out.append(("kd", 1, None, {"students.k": 1, "students.beta": 0.0}))
        return out


def _label(variant: str, k: int, pct: float | None) -> str:
    return f"{variant}-k{k}" + (f"-p{pct:g}" if pct is not None else "")


def run_ablation(base: Config, out: Path, plan: AblationPlan, log=print) -> dict:
    """Train one teacher, then every variant for every seed; write ablation.json, ablation.md and a plot."""
    out.mkdir(parents=True, exist_ok=True)
    teacher_dir = init_run(out / "teacher", base)
    run_stage(teacher_dir, "teacher", log=log)
    rows = []
    for variant, k, pct, over in plan.runs():
        label = _label(variant, k, pct)
        results = []
        for seed in plan.seeds:
            seeded = {**over, "students.seed": seed, "partition.seed": seed}
            cfg = load_config(overrides={**_flat(base), **seeded})
            rd_path = out / label / f"seed{seed}"
            rd_path.mkdir(parents=True, exist_ok=True)
            if not (rd_path / "teacher.pt").exists():
                shutil.copyfile(teacher_dir.teacher, rd_path / "teacher.pt")
            rd = init_run(rd_path, cfg)
            log(f"[ablate] {label} seed {seed}")
            results.append(run_all(rd, log=lambda _msg: None))
        rows.append(_summarise(variant, k, pct, results))
        _write_report(out, plan, base, rows)  # after every row, so a long ablation shows progress
    return _write_report(out, plan, base, rows)


def _write_report(out: Path, plan: AblationPlan, base: Config, rows: list[dict]) -> dict:
    report = {"plan": plan.__dict__, "teacher_accuracy": rows[0]["teacher_accuracy"] if rows else None,
              "rows": rows, "complete": len(rows) == len(plan.runs()), "config": base.to_dict()}
    atomic.write_json(out / "ablation.json", report)
    atomic.write_text(out / "ablation.md", format_markdown(report))
    plot_accuracy_vs_memory(out / "ablation.png", report)
    return report


def _flat(cfg: Config) -> dict:
    return {f"{s}.{k}": v for s, section in cfg.to_dict().items() for k, v in section.items()}


def _summarise(variant: str, k: int, pct: float | None, results: list[dict]) -> dict:
    accs = [r["nonn"]["accuracy"] for r in results]
    return {
        "variant": variant, "k": k, "threshold_percentile": pct, "seeds": len(accs), "accuracies": accs,
        "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "per_device_weight_bytes": max(s["weight_bytes"] for s in results[0]["nonn"]["students"]),
        "teacher_accuracy": results[0]["teacher"]["accuracy"],
        "teacher_weight_bytes": results[0]["teacher"]["weight_bytes"],
    }


def format_markdown(report: dict) -> str:
    lines = ["| variant | K | threshold pct | test accuracy (mean ± std) | seeds | per-device weights |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        pct = "" if r["threshold_percentile"] is None else f"{r['threshold_percentile']:g}"
        lines.append(f"| {r['variant']} | {r['k']} | {pct} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
                     f"{r['seeds']} | {r['per_device_weight_bytes'] / 1e3:.1f} kB |")
    if report["rows"]:
        r0 = report["rows"][0]
        lines.append(f"| teacher | – | | {100 * r0['teacher_accuracy']:.2f} | 1 | "
                     f"{r0['teacher_weight_bytes'] / 1e3:.1f} kB |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_memory(path: Path, report: dict) -> None:
    """Accuracy against per-device weight memory, one marker per variant, error bars over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    markers = dict(zip(VARIANTS, "osD^v"))
    for variant in VARIANTS:
        rows = [r for r in report["rows"] if r["variant"] == variant]
        if rows:
            ax.errorbar([r["per_device_weight_bytes"] / 1e3 for r in rows], [100 * r["mean"] for r in rows],
                        yerr=[100 * r["std"] for r in rows], fmt=markers[variant], capsize=3, label=variant)
    if report["rows"]:
        r0 = report["rows"][0]
        ax.plot([r0["teacher_weight_bytes"] / 1e3], [100 * r0["teacher_accuracy"]], "k*", ms=12, label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel("weights per device (kB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def load_report(out: Path) -> dict:
    return json.loads((out / "ablation.json").read_text())
