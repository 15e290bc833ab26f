"""The ablation's table, JSON and plot: one row per variant and K, mean ± sample std over seeds."""

from __future__ import annotations

import statistics
from pathlib import Path

from . import atomic

MARKERS = {"ah": "o", "coact": "s", "random": "D", "no-at": "^", "pooled": "P", "kd": "v", "compressed": "X"}


def summarise(variant: str, k: int, pct: float | None, results: list[dict]) -> dict:
    """One row from the metrics of every seed of one configuration."""
    accs = [r["nonn"]["accuracy"] for r in results]
    students = results[0]["nonn"]["students"]
    missing = [r["nonn"]["accuracy_missing_student"] for r in results]
    return {
        "variant": variant, "k": k, "threshold_percentile": pct, "seeds": len(accs), "accuracies": accs,
        "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "archs": [s["arch"] for s in students],
        "params_total": results[0]["nonn"]["params_total"],
        "per_device_weight_bytes": max(s["weight_bytes"] for s in students),
        "per_device_macs": max(s["macs"] for s in students),
        # Student i missing, averaged over seeds (empty for one student).
        "missing_mean": [statistics.fmean(m[i] for m in missing) for i in range(len(missing[0]))],
        "teacher_accuracy": results[0]["teacher"]["accuracy"],
        "teacher_weight_bytes": results[0]["teacher"]["weight_bytes"],
        "teacher_macs": results[0]["teacher"]["macs"],
        "teacher_params": results[0]["teacher"]["params"],
        "test_images": results[0]["test_images"],
    }


def write_report(out: Path, plan, base, rows: list[dict], planned: int, timing: dict | None = None) -> dict:
    report = {"plan": plan.__dict__, "teacher_accuracy": rows[0]["teacher_accuracy"] if rows else None,
              "rows": rows, "complete": len(rows) == planned, "config": base.to_dict(), "timing": timing}
    atomic.write_json(out / "ablation.json", report)
    atomic.write_text(out / "ablation.md", format_markdown(report))
    plot_accuracy_vs_memory(out / "ablation.png", report)
    return report


def format_markdown(report: dict) -> str:
    lines = ["| variant | K | threshold pct | test accuracy (mean ± std) | seeds | per-device weights | "
             "per-device MACs | students | with one student missing |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        pct = "" if r["threshold_percentile"] is None else f"{r['threshold_percentile']:g}"
        missing = " / ".join(f"{100 * a:.1f}" for a in r.get("missing_mean", []))
        archs = r.get("archs", [])
        arch = f"{len(archs)} × {archs[0]}" if archs and len(set(archs)) == 1 else ", ".join(archs)
        macs = f"{r['per_device_macs'] / 1e6:.2f} M" if "per_device_macs" in r else ""
        lines.append(f"| {r['variant']} | {r['k']} | {pct} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
                     f"{r['seeds']} | {r['per_device_weight_bytes'] / 1e3:.1f} kB | {macs} | {arch} | {missing} |")
    if report["rows"]:
        r0 = report["rows"][0]
        macs = f"{r0['teacher_macs'] / 1e6:.2f} M" if "teacher_macs" in r0 else ""
        lines.append(f"| teacher | – | | {100 * r0['teacher_accuracy']:.2f} | 1 | "
                     f"{r0['teacher_weight_bytes'] / 1e3:.1f} kB | {macs} | | |")
    text = "\n".join(lines) + "\n"
    timing = report.get("timing")
    if timing:
        text += (f"\n{timing['runs']} trainings (teacher included) took {timing['wall_s'] / 60:.1f} min of wall time "
                 f"and {timing['cpu_s'] / 60:.1f} min of CPU time.\n")
    return text


def plot_accuracy_vs_memory(path: Path, report: dict) -> None:
    """Accuracy against per-device weight memory, one marker per variant, error bars over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for variant, marker in MARKERS.items():
        rows = [r for r in report["rows"] if r["variant"] == variant]
        if rows:
            ax.errorbar([r["per_device_weight_bytes"] / 1e3 for r in rows], [100 * r["mean"] for r in rows],
                        yerr=[100 * r["std"] for r in rows], fmt=marker, capsize=3, label=variant)
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
