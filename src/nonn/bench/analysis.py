"""The case study's figures from its samples: one-way message costs, per-node medians and energy, the total
latency variants, and the paper's ratios and claims."""

from __future__ import annotations

import numpy as np

from .deployments import Deployment
from .energy import node_energy_j
from .links import transfer_time_s
from .profiles import LinkProfile
from .runners import Sample

TARGETS = {"weight_memory": 24.0, "compute": 12.0, "energy": 14.0, "total_latency": 33.0}


def calibrate(shapes: dict, samples: dict, link: LinkProfile) -> dict:
    """One-way cost of each probed message over the link: median round trip of (message -> tiny reply) minus half
    the median round trip of (tiny -> tiny); beside it what transfer_time_s models."""
    tiny = float(np.median([s.total_ms for s in samples["probe tiny"]]))
    out = {"method": "one way = median probe round trip (message up, 1-float reply down) - median tiny round "
                     "trip / 2; the probe node runs a sink model (no real compute)"}
    for key, shape in shapes.items():
        got = samples[f"probe {key}"]
        nbytes = int(np.median([s.bytes_in[0] for s in got]))
        round_trip = float(np.median([s.total_ms for s in got]))
        out[key] = {"shape": list(shape), "message_bytes": nbytes, "samples": len(got), "round_trip_ms": round_trip,
                    "one_way_ms": round_trip - tiny / 2,
                    "modelled_one_way_ms": transfer_time_s(nbytes, link) * 1000.0}
    return out


def summarise(d: Deployment, samples: list[Sample], info: dict, link: LinkProfile, devices, calibration: dict,
               percentiles) -> dict:
    nodes = []
    for i, static in enumerate(d.nodes):
        compute = [s.compute_ms[i] for s in samples]
        bytes_in = int(np.median([s.bytes_in[i] for s in samples]))
        bytes_out = int(np.median([s.bytes_out[i] for s in samples]))
        compute_s = float(np.median(compute)) / 1000.0
        bits_in = (bytes_in + link.overhead_bytes) * 8
        bits_out = (bytes_out + link.overhead_bytes) * 8
        gets_input = d.kind == "gateway" or i == 0
        nodes.append({
            **static, **info[(d.name, i)],
            "compute_ms": percentiles(compute),
            "bytes_in": bytes_in, "bytes_out": bytes_out,
            "energy_j": {dev.name: node_energy_j(dev, compute_s, bits_out, bits_in, link) for dev in devices},
            "energy_j_input_local": {dev.name: node_energy_j(dev, compute_s, bits_out, 0 if gets_input else bits_in,
                                                             link) for dev in devices},
        })
    totals = [s.total_ms for s in samples]
    p50 = float(np.median(totals))
    image_ms = calibration["pixels" if d.first_hop == "uint8" else "image"]["one_way_ms"]
    cut_ms = (sum(calibration["x".join(map(str, n["out_shape"]))]["one_way_ms"] for n in nodes[:-1])
              if d.kind == "chain" else 0.0)
    return {
        "floor": floor(d, nodes, link, p50),
        "title": d.title, "kind": d.kind, "k": len(nodes), "samples": len(samples), "first_hop": d.first_hop,
        "shares_processes_with": d.shares,
        "total_ms": percentiles(totals),
        "modelled_transfer_ms": float(np.median([s.modelled_ms for s in samples])),
        "hub_overhead_ms": percentiles(s.hub_ms for s in samples),
        "messages_per_inference": 2 * len(nodes),
        "link_bytes_per_inference": sum(n["bytes_in"] + n["bytes_out"] + 2 * link.overhead_bytes for n in nodes),
        "derived_total_ms": {
            "measured": p50,
            "input_local": p50 - image_ms,
            "direct_chain": p50 - cut_ms,
            "direct_chain_input_local": p50 - cut_ms - image_ms,
        },
        "nodes": nodes,
        "samples_total_ms": totals,
    }


def floor(d: Deployment, nodes: list[dict], link: LinkProfile, measured_ms: float) -> dict:
    """The physical floor of one inference: each hop's message bytes at the link's rate, the link's delay per
    message, and the nodes' median compute; NoNN's K branches run at once (the slowest decides), a chain's hops
    one after the other. measured / floor is then the runtime's own cost (gRPC, HTTP/2 framing, Python, the hub)
    apart from the physics."""
    hops = []
    for n in nodes:
        wire = (n["bytes_in"] + n["bytes_out"]) * 8 / link.rate_bps * 1000.0
        hops.append({"role": n["role"], "bytes_in": n["bytes_in"], "bytes_out": n["bytes_out"], "transfer_ms": wire,
                     "delay_ms": 2 * link.delay_ms, "compute_ms": n["compute_ms"]["p50"]})
    for h in hops:
        h["floor_ms"] = h["transfer_ms"] + h["delay_ms"] + h["compute_ms"]
    if d.kind == "gateway":
        slowest = max(hops, key=lambda h: h["floor_ms"])
        parts = {key: slowest[key] for key in ("transfer_ms", "delay_ms", "compute_ms")}
        rule = "the slowest of the K parallel branches (request + reply at the link rate, 2 delays, compute)"
    else:
        parts = {key: sum(h[key] for h in hops) for key in ("transfer_ms", "delay_ms", "compute_ms")}
        rule = "every hop in turn (request + reply at the link rate, 2 delays, compute)"
    total = sum(parts.values())
    return {"ms": total, **parts, "measured_ms": measured_ms, "measured_over_floor": measured_ms / total if total else None,
            "rule": rule, "bytes": "serialized tensor messages (data + shape + dtype); no gRPC/HTTP/2 framing",
            "hops": hops}


LATENCY_VARIANTS = {
    "measured": "as measured: the image starts at the hub; a layer-split activation goes node -> hub -> node",
    "input_local": "measured minus one measured one-way transfer of the input image (link_calibration): the "
                   "input is already on the device(s)",
    "direct_chain": "measured minus one measured one-way transfer per cut (link_calibration): activations go "
                    "node -> node directly instead of through the hub",
    "direct_chain_input_local": "both corrections",
}


def _ratio(numerator: float | None, denominator: float | None, of: str) -> dict:
    value = numerator / denominator if numerator is not None and denominator else None
    return {"value": value, "numerator": numerator, "denominator": denominator, "of": of}


def ratios(deps: dict, device_names: list[str]) -> dict:
    """The paper's comparisons from the figures of one link's run (every value is numerator / denominator)."""
    teacher = deps["teacher"]["nodes"][0]
    students = deps["nonn"]["nodes"]
    rss = [s["peak_rss_bytes"] for s in students]
    out = {
        "weight_memory": _ratio(teacher["weight_bytes"], max(s["weight_bytes"] for s in students),
                                "teacher node weight bytes / largest NoNN student's weight bytes"),
        "peak_rss": _ratio(teacher["peak_rss_bytes"], max(rss) if all(rss) else None,
                           "teacher node process peak RSS / largest NoNN node process peak RSS"),
        "compute": _ratio(teacher["compute_ms"]["p50"], max(s["compute_ms"]["p50"] for s in students),
                          "teacher node median compute ms / slowest NoNN student's median compute ms"),
        "energy": {}, "energy_input_local": {}, "total_latency": {},
    }
    for dev in device_names:
        for key in ("energy_j", "energy_j_input_local"):
            out[key.replace("_j", "")][dev] = _ratio(
                teacher[key][dev]["total_j"], max(s[key][dev]["total_j"] for s in students),
                f"teacher node energy / largest NoNN node energy ({dev}, {key})")
    for baseline in ("compressed_split", "teacher_split", "teacher", "compressed"):
        out["total_latency"][baseline] = {
            variant: _ratio(deps[baseline]["derived_total_ms"][variant], deps["nonn"]["derived_total_ms"][variant],
                            f"{baseline} / nonn median total ms ({variant})")
            for variant in LATENCY_VARIANTS}
    if "nonn_pixels" in deps:  # uint8 pixels on every first hop
        out["total_latency_pixels"] = {
            baseline: _ratio(deps[baseline + "_pixels"]["total_ms"]["p50"], deps["nonn_pixels"]["total_ms"]["p50"],
                             f"{baseline}_pixels / nonn_pixels median total ms (measured)")
            for baseline in ("compressed_split", "teacher_split", "teacher", "compressed")}
    if "nonn_int8" in deps:
        int8, fp32 = deps["nonn_int8"]["nodes"], deps["nonn_pixels"]["nodes"]
        rss8 = [s["peak_rss_bytes"] for s in int8]
        out["int8"] = {
            "weight_memory": _ratio(teacher["weight_bytes"], max(s["weight_bytes"] for s in int8),
                                    "teacher node weight bytes (float32) / largest int8 student's weight bytes"),
            "weight_bytes_vs_fp32": _ratio(max(s["weight_bytes"] for s in int8), max(s["weight_bytes"] for s in fp32),
                                           "largest int8 student's weight bytes / largest float32 student's"),
            "compute_vs_fp32": _ratio(max(s["compute_ms"]["p50"] for s in int8),
                                      max(s["compute_ms"]["p50"] for s in fp32),
                                      "slowest int8 student's median compute / slowest float32 student's (both "
                                      "uint8 pixels)"),
            "peak_rss_vs_fp32": _ratio(max(rss8) if all(rss8) else None, max(rss) if all(rss) else None,
                                       "largest int8 node peak RSS / largest float32 node peak RSS"),
            "total_latency": _ratio(deps["compressed_split_pixels"]["total_ms"]["p50"],
                                    deps["nonn_int8"]["total_ms"]["p50"],
                                    "compressed_split_pixels / nonn_int8 median total ms"),
        }
        for dev in device_names:
            out["int8"][f"energy_vs_fp32_{dev}"] = _ratio(
                max(s["energy_j"][dev]["total_j"] for s in int8), max(s["energy_j"][dev]["total_j"] for s in fp32),
                f"largest int8 node energy / largest float32 node energy ({dev})")
    return out


def headline(result: dict) -> dict:
    """The paper's four claims against this run, per link: value, target, met."""
    rows = {}
    first_device = result["config"]["devices"][0]
    for name, run in result["runs"].items():
        r = run["ratios"]
        lat = r["total_latency"]["compressed_split"]

        def row(ratio, target):
            return {"value": ratio["value"], "target": target,
                    "met": ratio["value"] is not None and ratio["value"] >= target}

        rows[name] = {
            "weight_memory": row(r["weight_memory"], TARGETS["weight_memory"]),
            "compute": row(r["compute"], TARGETS["compute"]),
            f"energy_{first_device}": row(r["energy"][first_device], TARGETS["energy"]),
            f"energy_{first_device}_input_local": row(r["energy_input_local"][first_device], TARGETS["energy"]),
            "total_latency_vs_compressed_split": row(lat["measured"], TARGETS["total_latency"]),
            "total_latency_vs_compressed_split_input_local": row(lat["input_local"], TARGETS["total_latency"]),
        }
        if "total_latency_pixels" in r:
            rows[name]["total_latency_vs_compressed_split_pixels"] = row(
                r["total_latency_pixels"]["compressed_split"], TARGETS["total_latency"])
        if "int8" in r:
            rows[name]["weight_memory_int8"] = row(r["int8"]["weight_memory"], TARGETS["weight_memory"])
    return rows
