"""`nonn ablate`: what each part of NoNN contributes, on the same data, teacher and seeds.

Variants: the Activation-Hub partition (ah), the co-activation partition (coact), a random partition of the
same sizes (random), NoNN without the attention-transfer term (no-at), the authors' pooled form of attention
transfer (pooled), one student of the same per-device size trained with KD alone (kd), the compressed
baseline: one model of the same *total* weights as the K students, trained with KD and attention transfer
(compressed), the Activation-Hub partition with its threshold chosen from the graph (ah-auto) and its
random control of the same sizes (random-auto); and the teacher. Over K and the partition threshold percentile, for several seeds. Every run is an
ordinary run directory under OUT, so an interrupted ablation resumes where it stopped.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic
from .ablate_report import summarise, write_report
from .config import Config, load_config
from .errors import ConfigError
from .pipeline import init_run, run_all, run_stage
from .rundir import file_sha256
from .stages.evaluate import TEACHER_EVAL

VARIANTS = ("ah", "coact", "random", "no-at", "pooled", "kd", "compressed", "ah-auto", "random-auto")
DEFAULT_VARIANTS = ("ah", "coact", "random", "no-at", "kd")

# Named benchmarks: base overrides and a plan. Why these sizes: README, "NoNN on Fashion-MNIST".
PRESETS = {
    "fashion-mnist": {
        "overrides": {"data.name": "fashion-mnist", "data.limit_train": 3000, "data.val_fraction": 0.02,
                      "teacher.epochs": 15, "students.epochs": 12},
        # The controls that decide the method's claims first, so an interrupted run has them.
        "ks": [2, 4], "percentiles": [99.0], "seeds": [0, 1, 2],
        "variants": ["ah", "compressed", "random", "ah-auto", "random-auto", "no-at", "pooled", "coact", "kd"],
    },
    # The same table at full scale, for a GPU: all 54,000 training images, the paper's epochs (teacher_views
    # auto is then 50: every distinct view of pad 2 and mirror, the live teacher's distribution exactly).
    "fashion-mnist-full": {
        "overrides": {"data.name": "fashion-mnist", "data.val_fraction": 0.1, "teacher.epochs": 200,
                      "students.epochs": 200},
        "ks": [2, 4], "percentiles": [99.0], "seeds": [0, 1, 2], "variants": list(VARIANTS),
    },
}


@dataclass
class AblationPlan:
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    percentiles: list[float] = field(default_factory=lambda: [90.0, 95.0, 99.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown ablation variant(s) {unknown}; choose from: {', '.join(VARIANTS)}")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError("--k takes a comma-separated list of K >= 1, e.g. 1,2,4,8")
        if not self.seeds:
            raise ConfigError("--seeds takes a comma-separated list of integers, e.g. 0,1,2")
        if "compressed" in self.variants and not any(k > 1 for k in self.ks):
            raise ConfigError("the compressed baseline matches a NoNN of K > 1; add such a K to --k")
        if "compressed" in self.variants and "ah" not in self.variants:
            raise ConfigError("the compressed baseline is sized from the ah students; add ah to --variants")

    def runs(self) -> list[tuple[str, int, float | None, dict]]:
        """(variant, K, percentile or None, overrides) for every distinct configuration, smallest K first.

        K = 1 has a single group, so every partition rule gives the same NoNN: it runs once (as ah). The
        threshold sweep runs at the smallest K above 1; other K use the largest percentile listed. The kd row
        follows the smallest K's rows, and each K's compressed row follows that K's own rows (it is sized from
        that K's Activation-Hub students), so the smallest K's table is complete first.
        """
        default_pct = max(self.percentiles)
        sweep_k = min((k for k in self.ks if k > 1), default=None)
        out = []
        for k in sorted(set(self.ks)):
            for v in self.variants:
                if v in ("kd", "compressed") or (k == 1 and v != "ah"):
                    continue
                if v in ("ah-auto", "random-auto"):
                    rule = "ah" if v == "ah-auto" else "random"
                    out.append((v, k, None, {"students.k": k, "partition.rule": rule,
                                             "partition.threshold_percentile": "auto"}))
                    continue
                over: dict = {"students.k": k, "partition.threshold_percentile": default_pct}
                if v == "random":
                    over["partition.rule"] = "random"
                elif v == "no-at":
                    over["students.beta"] = 0.0
                elif v == "pooled":
                    over["students.at_form"] = "pooled"
                else:
                    over["partition.rule"] = v
                if v in ("ah", "coact") and k == sweep_k:
                    for pct in sorted(self.percentiles):
                        out.append((v, k, pct, {**over, "partition.threshold_percentile": pct}))
                else:
                    out.append((v, k, default_pct if v in ("ah", "coact") and k > 1 else None, over))
                if v == "ah" and k > 1 and "compressed" in self.variants:
                    # Sized at run time to the total weights of this K's ah students (same seed).
                    out.append(("compressed", k, None, {"students.k": 1, "_match": _label("ah", k, default_pct)}))
            if "kd" in self.variants and k == min(self.ks):
                out.append(("kd", 1, None, {"students.k": 1, "students.beta": 0.0}))
        return out


def _label(variant: str, k: int, pct: float | None) -> str:
    return f"{variant}-k{k}" + (f"-p{pct:g}" if pct is not None else "")  # ah-auto-k2: the percentile varies


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Timings:
    """Wall and CPU seconds of every run that did work, kept in OUT/timings.json across resumed invocations."""

    def __init__(self, path: Path):
        self.path = path
        self.runs: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    def measure(self, key: str, work) -> object:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        result, did_work = work()
        if did_work:
            self.runs[key] = {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_seconds() - cpu}
            atomic.write_json(self.path, self.runs)
        return result

    def total(self) -> dict:
        return {"wall_s": sum(r["wall_s"] for r in self.runs.values()),
                "cpu_s": sum(r["cpu_s"] for r in self.runs.values()), "runs": len(self.runs)}


def _matched_budget(out: Path, match: str, seed: int) -> str:
    metrics = out / match / f"seed{seed}" / "metrics.json"
    if not metrics.exists():
        raise ConfigError(f"the compressed baseline is sized from {metrics}, which does not exist; "
                          "include the ah variant in --variants")
    total = sum(s["weight_bytes"] for s in json.loads(metrics.read_text())["nonn"]["students"])
    return f"{total}B"


def run_ablation(base: Config, out: Path, plan: AblationPlan, log=print) -> dict:
    """Train one teacher, then every variant for every seed; write ablation.json, ablation.md and a plot."""
    out.mkdir(parents=True, exist_ok=True)
    timings = _Timings(out / "timings.json")
    teacher_dir = init_run(out / "teacher", base)
    timings.measure("teacher", lambda: (None, run_stage(teacher_dir, "teacher", log=log)))
    rows = []
    for variant, k, pct, over in plan.runs():
        label = _label(variant, k, pct)
        results = []
        for seed in plan.seeds:
            seeded = {**over, "students.seed": seed, "partition.seed": seed}
            if "_match" in seeded:
                seeded["budget.memory"] = _matched_budget(out, seeded.pop("_match"), seed)
            cfg = load_config(overrides={**_flat(base), **seeded})
            rd_path = out / label / f"seed{seed}"
            rd_path.mkdir(parents=True, exist_ok=True)
            _share(teacher_dir.teacher, rd_path / "teacher.pt")
            shared_eval = out / "teacher" / TEACHER_EVAL
            if shared_eval.exists() and not (rd_path / TEACHER_EVAL).exists():
                shutil.copyfile(shared_eval, rd_path / TEACHER_EVAL)
            rd = init_run(rd_path, cfg)
            log(f"[ablate] {label} seed {seed}")
            metrics = timings.measure(f"{label}/seed{seed}", lambda: _run_logged(rd))
            if (rd_path / TEACHER_EVAL).exists() and not shared_eval.exists():
                shutil.copyfile(rd_path / TEACHER_EVAL, shared_eval)
            results.append(metrics)
        rows.append(summarise(variant, k, pct, results))
        write_report(out, plan, base, rows, len(plan.runs()), timings.total())  # a long ablation shows progress
    return write_report(out, plan, base, rows, len(plan.runs()), timings.total())


def _share(shared: Path, copy: Path) -> None:
    """Copy the shared teacher into a run unless the run already holds the same file: after the base config
    changes, the shared teacher is retrained once and every run must take the new one, not train its own."""
    if not copy.exists() or file_sha256(copy) != file_sha256(shared):
        atomic.write_bytes(copy, shared.read_bytes())


def _run_logged(rd) -> tuple[dict, bool]:
    before = rd.students.stat().st_mtime_ns if rd.students.exists() else None
    metrics = run_all(rd, log=lambda _msg: None)
    return metrics, rd.students.stat().st_mtime_ns != before


def _flat(cfg: Config) -> dict:
    return {f"{s}.{k}": v for s, section in cfg.to_dict().items() for k, v in section.items()}


def load_report(out: Path) -> dict:
    return json.loads((out / "ablation.json").read_text())
