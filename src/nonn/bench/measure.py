"""One link's run of the case study: serve every deployment over the link, measure them in interleaved rounds (and
with RAPL where it is readable), and summarise what was measured."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict

from .analysis import calibrate, ratios, summarise
from .deployments import Prepared
from .links import DEFAULT_PREFIX, SHAPING_NETNS
from .profiles import DeviceProfile, LinkProfile
from .runners import MIN_SAMPLES, DeploymentRunner, ProbeRunner, interleave, probe_shapes
from .topology import TBF_BURST_BYTES, modelled_s, queue_ms, serve

RAPL_INFERENCES = 20


def _rapl(runners: dict, samples: dict, names: list[str]) -> dict:
    """Joules per inference of each deployment, measured alone in a block, where RAPL is readable."""
    from .rapl import RaplMeter
    from .rapl import available as rapl_available

    rapl_ok, rapl_reason = rapl_available()
    rapl = {"available": rapl_ok, "reason": rapl_reason}
    if rapl_ok:
        rapl["joules_per_inference"] = {}
        for name in names:
            count = min(RAPL_INFERENCES, max(MIN_SAMPLES, len(samples[name])))
            with RaplMeter() as meter:
                for j in range(count):
                    runners[name](j)
            if meter.joules is not None:
                rapl["joules_per_inference"][name] = meter.joules / count
        rapl["note"] = ("CPU package energy of this whole machine (all processes, the hub included) per "
                        "inference, each deployment measured alone in a block")
    return rapl


def measure_link(prep: Prepared, link: LinkProfile, devices: list[DeviceProfile], *, mode: str, requests: int,
                 warmup: int, max_seconds: float, link_prefix: str = DEFAULT_PREFIX, log=print) -> dict:
    """Serve every deployment over ``link`` and measure them in interleaved rounds; the link's record."""
    from ..deploy.load import percentiles
    from .chain import write_sink_model

    sink = prep.work / "models" / "probe_sink.onnx"
    if not sink.exists():
        write_sink_model(sink)
    in_process = mode != SHAPING_NETNS
    timeout_s = 60.0 + 20.0 * modelled_s(prep, link)
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        served = serve(stack, prep, link, sink, in_process=in_process, timeout_s=timeout_s,
                       link_prefix=link_prefix, log=log)
        children = served.children
        runners = {d.name: stack.enter_context(contextlib.closing(DeploymentRunner(
            d, [children[(d.name, i)].address for i in range(len(d.files))],
            served.gateways[d.name].address if d.kind == "gateway" else None, prep, link,
            in_process, timeout_s))) for d in prep.deployments}
        shapes = probe_shapes(prep)
        for key, shape in shapes.items():
            runners[f"probe {key}"] = stack.enter_context(contextlib.closing(ProbeRunner(
                children[("probe", 0)].address, shape, link, in_process, timeout_s)))

        started = time.perf_counter()
        samples, rounds = interleave(runners, requests, warmup, max_seconds)
        log(f"[bench] {link.name}: {rounds} rounds in {time.perf_counter() - started:.1f} s")
        names = [d.name for d in prep.deployments]
        rapl = _rapl(runners, samples, names)
        served.procs.check_alive()
        rss = served.procs.peak_rss()
        info = {key: {"pid": c.pid, "address": c.address, "core": served.cores[key],
                      "peak_rss_bytes": rss.get(c.name)} for key, c in children.items()}
        gateway_rss = {name: rss.get(g.name) for name, g in served.gateways.items()}
        diffs = {name: runners[name].worst_diff for name in names}

    calibration = calibrate(shapes, samples, link)
    result = {"link": asdict(link), "shaping": mode,
              "requests_measured": {n: len(samples[n]) for n in names}, "rounds": rounds,
              "tbf_queue_ms": None if in_process else queue_ms(prep, link),
              "tbf_burst_bytes": None if in_process else TBF_BURST_BYTES,
              "load_average": {"before": list(load_before), "after": list(os.getloadavg()),
                               "note": "1, 5, 15 min load averages of this machine; work of other processes "
                                       "during the run perturbs every figure"},
              "timeout_s": timeout_s, "gateway_peak_rss_bytes": gateway_rss, "rapl": rapl,
              "runtime_parity_max_abs_diff": diffs, "link_calibration": calibration, "deployments": {}}
    for d in prep.deployments:
        result["deployments"][d.name] = summarise(d, samples[d.name], info, link, devices, calibration,
                                                  percentiles)
    result["ratios"] = ratios(result["deployments"], [dev.name for dev in devices])
    return result
