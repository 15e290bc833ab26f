"""Training curves of a stage, from its per-epoch metrics.csv: loss terms, accuracies, learning rate."""

from __future__ import annotations

import csv
from pathlib import Path

from .. import atomic


def read_rows(path: Path) -> list[dict[str, float]]:
    """The rows of a stage's metrics.csv, numbers as floats (empty cells dropped), in epoch order."""
    with open(path, newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    return sorted((r for r in rows if "epoch" in r), key=lambda r: r["epoch"])


def plot_training_curves(csv_path: Path, png_path: Path, title: str = "") -> Path:
    """Three panels over epochs (1-based): every loss column, train/val accuracy, learning rate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_rows(csv_path)
    epochs = [r["epoch"] + 1 for r in rows]
    columns = sorted({k for r in rows for k in r})
    losses = [c for c in columns if c == "loss" or c.startswith("loss_")]
    fig = Figure(figsize=(12, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, names, label in ((axes[0], losses, "loss"), (axes[1], ["train_acc", "val_acc"], "accuracy"),
                             (axes[2], ["lr"], "learning rate")):
        for name in names:
            points = [(e, r[name]) for e, r in zip(epochs, rows) if name in r]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=2.5, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if losses and all(r.get(c, 1.0) > 0 for r in rows for c in losses):
        axes[0].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic.atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return png_path
