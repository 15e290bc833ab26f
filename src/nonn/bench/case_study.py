"""`nonn bench`: the NoNN paper's case study (memory, compute, energy per node; total latency), measured here.

The jobs live in their own modules: ``deployments`` (models, exports, parity), ``topology`` (processes and links),
``runners`` (one inference as the hub runs it, interleaved rounds), ``measure`` (one link's run), ``analysis``
(figures, ratios, claims) and ``report`` (bench.md, plots, and the method text).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict
from pathlib import Path

from .. import atomic
from ..errors import ConfigError
from .analysis import LATENCY_VARIANTS, headline
from .deployments import Prepared, prepare_architecture, prepare_run
from .measure import measure_link
from .profiles import DeviceProfile, LinkProfile, get_device, get_link
from .runners import MIN_SAMPLES
from .synthetic import BENCH_FORMAT, UNTRAINED_NOTE, parse_input
from .topology import SHAPING_DESCRIPTIONS, TBF_BURST_BYTES, resolve_shaping

DEFAULT_LINKS = ("wifi",)
DEFAULT_DEVICES = ("rpi3b_plus", "nrf52840")
DEFAULT_REQUESTS = 100
DEFAULT_WARMUP = 3
DEFAULT_MAX_SECONDS = 60.0


def bench(run_dir: str | Path | None = None, *, teacher_arch: str | None = None, student_arch: str | None = None,
          k: int | None = None, input_shape=None, links=DEFAULT_LINKS, devices=DEFAULT_DEVICES,
          requests: int = DEFAULT_REQUESTS, warmup: int = DEFAULT_WARMUP, max_seconds: float = DEFAULT_MAX_SECONDS,
          shaping: str = "auto", out: str | Path | None = None, log=print) -> dict:
    """Prepare the deployments, measure them over every link, write bench.json, bench.md and plots."""
    from ..deploy.processes import interrupt_on_signals

    arch_form = teacher_arch is not None or student_arch is not None
    if run_dir is not None and arch_form:
        raise ConfigError("give either RUN_DIR or --teacher-arch/--student-arch, not both")
    if run_dir is None and not (teacher_arch and student_arch):
        raise ConfigError("give a RUN_DIR, or --teacher-arch and --student-arch for untrained models")
    if run_dir is not None and (k is not None or input_shape is not None):
        raise ConfigError("--k and --input belong to the architecture form; a run directory has its own")
    if requests < 1 or warmup < 0 or not max_seconds > 0:
        raise ConfigError("--requests must be >= 1, --warmup >= 0 and --max-seconds > 0")
    link_profiles = [get_link(name) for name in dict.fromkeys(links or DEFAULT_LINKS)]
    device_profiles = [get_device(name) for name in dict.fromkeys(devices or DEFAULT_DEVICES)]
    mode, why = resolve_shaping(shaping)
    if arch_form:
        k = 2 if k is None else int(k)
        input_shape = parse_input(input_shape or "3x32x32")
        out = Path(out) if out else Path("runs") / f"bench-{teacher_arch}-{student_arch}-k{k}"
    else:
        out = Path(out) if out else Path(run_dir)
    work = out / "bench"
    log(f"[bench] shaping: {mode} ({why})")
    with interrupt_on_signals():
        if arch_form:
            log(f"[bench] {UNTRAINED_NOTE}")
            prep = prepare_architecture(teacher_arch, student_arch, k, input_shape, work, log=log)
        else:
            prep = prepare_run(run_dir, work, log=log)
        runs = {}
        for link in link_profiles:
            runs[link.name] = measure_link(prep, link, device_profiles, mode=mode, requests=requests, warmup=warmup,
                                           max_seconds=max_seconds, log=log)
    result = assemble(prep, runs, form="architecture" if arch_form else "run", links=link_profiles,
                      devices=device_profiles, requests=requests, warmup=warmup, max_seconds=max_seconds,
                      shaping=(mode, why), out=out)
    write_outputs(result, out)
    return result


def assemble(prep: Prepared, runs: dict, *, form: str, links: list[LinkProfile], devices: list[DeviceProfile],
             requests: int, warmup: int, max_seconds: float, shaping: tuple[str, str], out: Path) -> dict:
    """bench.json's content from the prepared deployments and the per-link runs."""
    from . import report

    mode, why = shaping
    link_profiles, device_profiles = links, devices
    cpus = os.cpu_count() or 1
    widest = max(len(d.files) for d in prep.deployments)
    result = {
        "format": BENCH_FORMAT,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "untrained": prep.untrained,
        "note": UNTRAINED_NOTE if prep.untrained else "trained models from the run directory",
        "out": str(out),
        "source": prep.source,
        "config": {
            "form": form,
            "teacher_arch": prep.models["teacher"]["arch"], "student_archs": prep.models["nonn"]["student_archs"],
            "compressed_arch": prep.models["compressed"]["arch"], "k": prep.k, "input_shape": list(prep.input_shape),
            "links": [p.name for p in link_profiles], "devices": [p.name for p in device_profiles],
            "requests": requests, "warmup": warmup, "max_seconds": max_seconds, "min_samples": MIN_SAMPLES,
            "distinct_images": len(prep.images), "cpu_count": cpus,
            "pinning": (f"node i of every deployment pinned to core i mod {cpus} (taskset)" if cpus >= widest
                        else f"not pinned: {cpus} cores for up to {widest} nodes of one deployment"),
            "ort_threads": 1, "security": "plaintext gRPC for every deployment alike",
            "shaping": {"mode": mode, "reason": why, "description": SHAPING_DESCRIPTIONS[mode]},
        },
        "links": {p.name: asdict(p) for p in link_profiles},
        "devices": {p.name: asdict(p) for p in device_profiles},
        "models": prep.models,
        "layer_split": prep.layer_split,
        "parity": prep.parity,
        "latency_variants": LATENCY_VARIANTS,
        "method": report.method(MIN_SAMPLES, TBF_BURST_BYTES),
        "runs": runs,
    }
    result["headline"] = headline(result)
    return result


def write_outputs(result: dict, out: Path) -> None:
    """bench.json, plots/bench_*.png and bench.md (which shows the plots) into ``out``."""
    from . import report

    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "bench.json", result)  # the measurements first: a report that fails loses none
    result["plots"] = [str(p) for p in report.write_plots(result, out / "plots")]
    atomic.write_text(out / "bench.md", report.format_markdown(result))
    atomic.write_json(out / "bench.json", result)
