"""`nonn report RUN_DIR`: one self-contained report.html (images embedded as base64, nothing fetched) from the
run's artifacts: configuration, partition, training curves, accuracy, per-student costs, and, when present,
export parity, deploy.json, bench.json and an ablation's table and plot."""

from __future__ import annotations

import base64
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import yaml

from .. import atomic
from ..errors import ReportError
from .curves import plot_training_curves

REPORT_FILE = "report.html"
TRAINING_STAGES = ("teacher", "students")


def _image(path: Path, caption: str) -> dict:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"src": f"data:image/png;base64,{data}", "alt": caption, "caption": f"{caption} ({path.name})"}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _scalars(obj: Any, prefix: str = "", limit: int = 40) -> list[tuple[str, Any]]:
    """Numbers, strings and booleans of a JSON document, two levels deep, as (dotted key, value)."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}{k}"
            if isinstance(v, (int, float, str, bool)) or v is None:
                out.append((key, f"{v:.6g}" if isinstance(v, float) else v))
            elif isinstance(v, dict) and not prefix:
                out.extend(_scalars(v, key + ".", limit))
    return out[:limit]


def _training_curves(run: Path) -> list[dict]:
    """The curve plot of each training stage, made from its metrics.csv when the PNG is missing or older."""
    figures = []
    for stage in TRAINING_STAGES:
        csv_path = run / "logs" / stage / "metrics.csv"
        png = run / "plots" / f"training_{stage}.png"
        if csv_path.exists() and (not png.exists() or png.stat().st_mtime < csv_path.stat().st_mtime):
            plot_training_curves(csv_path, png, title=f"{stage} training")
        if png.exists():
            figures.append(_image(png, f"{stage} training: loss terms, accuracy, learning rate per epoch"))
    return figures


def _ablation_rows(report: dict) -> list[list[str]]:
    from ..ablate_report import format_markdown
    lines = [ln for ln in format_markdown(report).splitlines() if ln.startswith("|") and not ln.startswith("|---")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def _documents(run: Path) -> list[dict]:
    docs = []
    for name, title, plots in (("deploy.json", "Local deployment (deploy.json)", []),
                               ("bench.json", "Benchmark (bench.json)", sorted((run / "plots").glob("bench_*.png")))):
        data = _read_json(run / name)
        if data is None:
            continue
        docs.append({"name": name, "title": title, "scalars": _scalars(data),
                     "figures": [_image(p, p.stem.replace("_", " ")) for p in plots],
                     "text": json.dumps(data, indent=2)[:200_000]})
    return docs


def render_report(run_dir: str | Path) -> str:
    """The report's HTML text for a run (or ablation) directory."""
    import jinja2
    run = Path(run_dir)
    ablation = _read_json(run / "ablation.json")
    if not (run / "config.yaml").exists() and ablation is None:
        raise ReportError(f"{run} is not a run directory (no config.yaml) nor an ablation's (no ablation.json); "
                          f"pass the --out folder of `nonn run` or `nonn ablate`")
    config_text = (run / "config.yaml").read_text() if (run / "config.yaml").exists() \
        else yaml.safe_dump(ablation.get("config", {}), sort_keys=False)
    metrics = _read_json(run / "metrics.json")
    partition = _read_json(run / "partition.json")
    manifest = _read_json(run / "onnx" / "manifest.json")
    partition_figures = [_image(run / "plots" / "partition.png", "filter graph, coloured by group")] \
        if (run / "plots" / "partition.png").exists() else []
    ablation_figures = [_image(run / "ablation.png", "ablation: accuracy against per-device memory")] \
        if ablation is not None and (run / "ablation.png").exists() else []
    env = jinja2.Environment(loader=jinja2.PackageLoader("nonn.report", "."), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    template = env.get_template("template.html")
    nonn_macs = None
    if metrics:
        nonn_macs = sum(s["macs"] for s in metrics["nonn"]["students"]) + metrics["nonn"]["head"]["macs"]
    return template.render(
        title=run.resolve().name, run_dir=str(run),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        metrics=metrics, nonn_macs=nonn_macs,
        budgeted=bool(metrics) and any("fits_budget" in s for s in metrics["nonn"]["students"]),
        partition=partition, partition_figures=partition_figures,
        curves=_training_curves(run),
        parity=(manifest or {}).get("parity"),
        documents=_documents(run),
        ablation_rows=_ablation_rows(ablation) if ablation else [], ablation_figures=ablation_figures,
        config_text=config_text,
        pct=lambda x: "–" if x is None else f"{100 * x:.2f} %",
        num=lambda x: "–" if x is None else f"{x:,}",
        fmt=lambda x: "–" if x is None else f"{x:.4f}",
    )


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html atomically; returns its path."""
    path = Path(run_dir) / REPORT_FILE
    atomic.write_text(path, render_report(run_dir))
    return path
