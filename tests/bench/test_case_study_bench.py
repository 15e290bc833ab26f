"""`nonn bench` end to end on tiny untrained models: every deployment served by real node processes,
on loopback (transfer time added in process) and over shaped links in namespaces (skipped, with
netns_available()'s reason, where namespaces are not permitted). Nothing asserts on timing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from nonn.bench import case_study as cs
from nonn.bench.deployments import DEPLOYMENT_TITLES, prepare_architecture
from nonn.bench.links import SHAPING_NETNS, netns_available
from nonn.bench.measure import measure_link
from nonn.bench.profiles import get_device, get_link
from nonn.bench.topology import SHAPING_IN_PROCESS, TBF_BURST_BYTES

NETNS_OK, NETNS_WHY = netns_available()
PREFIX = "nonnc"
DEVICES = [get_device("rpi3b_plus"), get_device("nrf52840")]
BASE = ["nonn", "teacher", "compressed", "teacher_split", "compressed_split"]
DEPLOYMENTS = list(DEPLOYMENT_TITLES)  # the base five, NoNN int8, and each base one with uint8 pixels first


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench") / "bench"
    return prepare_architecture("wrn-10-2", "wrn-10-1", 2, (1, 8, 8), work, log=lambda _m: None)


def _edge_children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == os.getpid() and stat[0] != "Z" and b"nonn.edge" in cmd:
                found.append(int(entry.name))
    return found


def _our_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{PREFIX}{os.getpid()}")]


def _check_run(run: dict, prepared, link) -> None:
    assert list(run["deployments"]) == DEPLOYMENTS
    for name, diff in run["runtime_parity_max_abs_diff"].items():
        assert diff <= 1e-4, name        # served over gRPC: the same logits as in-process ONNX Runtime
    for name, dep in run["deployments"].items():
        assert dep["samples"] == run["requests_measured"][name] == 4
        assert len(dep["nodes"]) == (2 if name.startswith("nonn") or "_split" in name else 1)
        assert dep["first_hop"] == ("uint8" if name.endswith("_pixels") or name == "nonn_int8" else "float32")
        f = dep["floor"]
        assert f["ms"] == pytest.approx(f["transfer_ms"] + f["delay_ms"] + f["compute_ms"])
        assert f["measured_over_floor"] == pytest.approx(dep["total_ms"]["p50"] / f["ms"])
        hops = f["hops"]
        assert [h["bytes_in"] for h in hops] == [n["bytes_in"] for n in dep["nodes"]]
        if dep["kind"] == "chain":
            assert f["compute_ms"] == pytest.approx(sum(n["compute_ms"]["p50"] for n in dep["nodes"]))
            assert f["delay_ms"] == pytest.approx(2 * len(hops) * link.delay_ms)
        else:
            assert f["delay_ms"] == pytest.approx(2 * link.delay_ms)
        assert dep["total_ms"]["p50"] > 0
        for node in dep["nodes"]:
            assert node["compute_ms"]["p50"] > 0 and node["peak_rss_bytes"] > 0
            for dev in DEVICES:
                e = node["energy_j"][dev.name]
                assert e["total_j"] == pytest.approx(e["compute_j"] + e["tx_j"] + e["rx_j"])
                assert e["tx_j"] == pytest.approx((node["bytes_out"] + link.overhead_bytes) * 8
                                                  * link.energy_per_bit_j)
    split = run["deployments"]["teacher_split"]["nodes"]
    plan = prepared.layer_split["teacher"]
    # The bytes that crossed the cut are the activation of the plan plus the Tensor message's framing.
    assert plan["cut_bytes"][0] <= split[0]["bytes_out"] < plan["cut_bytes"][0] + 64
    assert split[1]["bytes_in"] == split[0]["bytes_out"]
    calibration = run["link_calibration"]
    image = calibration["image"]["message_bytes"]
    assert all(n["bytes_in"] == image for n in run["deployments"]["nonn"]["nodes"])
    # uint8 pixels on the first hop: a quarter of the image's bytes (plus the same small header)
    pixels = run["deployments"]["nonn_pixels"]["nodes"][0]["bytes_in"]
    assert pixels < image / 2 and run["deployments"]["nonn_int8"]["nodes"][0]["bytes_in"] == pixels
    for base in ("teacher", "compressed", "teacher_split", "compressed_split"):
        first = run["deployments"][base + "_pixels"]["nodes"][0]
        assert first["bytes_in"] == pixels
        assert first["bytes_out"] == run["deployments"][base]["nodes"][0]["bytes_out"]
    cut = calibration["x".join(map(str, split[0]["out_shape"]))]
    assert cut["message_bytes"] == split[0]["bytes_out"]
    assert calibration["tiny"]["message_bytes"] < image < cut["message_bytes"]
    for name, dep in run["deployments"].items():
        derived = dep["derived_total_ms"]
        first_hop = "pixels" if dep["first_hop"] == "uint8" else "image"
        assert derived["input_local"] == pytest.approx(derived["measured"] - calibration[first_hop]["one_way_ms"])
        if "_split" in name:
            own = calibration["x".join(map(str, dep["nodes"][0]["out_shape"]))]
            assert derived["direct_chain"] == pytest.approx(derived["measured"] - own["one_way_ms"])
        else:
            assert derived["direct_chain"] == derived["measured"]


def test_every_exported_deployment_gives_the_pytorch_logits(prepared):
    """Layer-split pieces in a chain, the merged one-device models and the NoNN all match PyTorch."""
    assert [d.name for d in prepared.deployments] == DEPLOYMENTS
    for name in BASE:
        assert prepared.parity[name] <= 1e-4, name
    int8 = prepared.parity["nonn_int8_vs_fp32"]
    assert int8["max_abs_logit_change"] > 0 and 0 <= int8["label_agreement"] <= 1
    by_name = {d.name: d for d in prepared.deployments}
    for base in ("teacher", "compressed"):
        whole, split = by_name[base], by_name[f"{base}_split"]
        assert len(whole.files) == 1 and len(split.files) == 2
        assert whole.nodes[0]["params"] == sum(n["params"] for n in split.nodes)
        np.testing.assert_allclose(whole.reference, split.reference, atol=1e-4, rtol=0)
    assert prepared.models["compressed"]["params"] <= (prepared.models["nonn"]["students_params_total"]
                                                       + prepared.models["nonn"]["head"]["params"])


def test_loopback_run_with_in_process_shaping(prepared):
    before = set(_edge_children())  # servers other tests of this session keep running
    link = get_link("wifi")
    run = measure_link(prepared, link, DEVICES, mode=SHAPING_IN_PROCESS, requests=4, warmup=1,
                          max_seconds=60, log=lambda _m: None)
    _check_run(run, prepared, link)
    assert run["shaping"] == SHAPING_IN_PROCESS and run["tbf_queue_ms"] is None
    for dep in run["deployments"].values():
        assert dep["modelled_transfer_ms"] > 0
        assert all(n["address"].startswith("127.0.0.1:") for n in dep["nodes"])
    assert set(_edge_children()) <= before
    prepared.runs = {"wifi": run}


@pytest.mark.skipif(not NETNS_OK, reason=f"network namespaces not usable: {NETNS_WHY}")
def test_shaped_links_in_namespaces(prepared):
    before = set(_edge_children())
    link = get_link("ethernet")
    run = measure_link(prepared, link, DEVICES, mode=SHAPING_NETNS, requests=4, warmup=1, max_seconds=60,
                          link_prefix=PREFIX, log=lambda _m: None)
    _check_run(run, prepared, link)
    assert run["shaping"] == SHAPING_NETNS and run["tbf_queue_ms"] >= 200
    assert run["tbf_burst_bytes"] == TBF_BURST_BYTES
    addresses = [n["address"] for dep in run["deployments"].values() for n in dep["nodes"]]
    # one process per piece of each deployment with its own models (the pixel variants share them)
    assert len(set(addresses)) == 10 and all(a.startswith("169.254.") for a in addresses)
    assert all(dep["modelled_transfer_ms"] == 0 for dep in run["deployments"].values())
    assert _our_namespaces() == [] and set(_edge_children()) <= before


def _get(obj, path: str):
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def test_bench_json_ratios_are_quotients_of_its_figures(prepared, tmp_path):
    if not getattr(prepared, "runs", None):
        pytest.skip("needs the loopback run of this module")
    out = tmp_path / "out"
    result = cs.assemble(prepared, prepared.runs, form="architecture", links=[get_link("wifi")], devices=DEVICES,
                         requests=4, warmup=1, max_seconds=60, shaping=(SHAPING_IN_PROCESS, "test"), out=out)
    cs.write_outputs(result, out)
    saved = json.loads((out / "bench.json").read_text())
    assert saved["untrained"] is True and "UNTRAINED" in saved["note"]
    assert saved["config"]["shaping"]["mode"] == SHAPING_IN_PROCESS
    md = (out / "bench.md").read_text()
    assert "UNTRAINED" in md and SHAPING_IN_PROCESS in md
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "bench_compute_per_node.png", "bench_energy_per_node.png", "bench_memory_per_node.png",
        "bench_total_latency.png"]

    deps = saved["runs"]["wifi"]["deployments"]
    r = saved["runs"]["wifi"]["ratios"]
    teacher, students = deps["teacher"]["nodes"][0], deps["nonn"]["nodes"]
    figures = {
        "weight_memory": (teacher["weight_bytes"], max(s["weight_bytes"] for s in students)),
        "compute": (teacher["compute_ms"]["p50"], max(s["compute_ms"]["p50"] for s in students)),
        "peak_rss": (teacher["peak_rss_bytes"], max(s["peak_rss_bytes"] for s in students)),
    }
    for key, (num, den) in figures.items():
        assert (r[key]["numerator"], r[key]["denominator"]) == (num, den)
        assert r[key]["value"] == pytest.approx(num / den)
    for dev in saved["config"]["devices"]:
        num = teacher["energy_j"][dev]["total_j"]
        den = max(s["energy_j"][dev]["total_j"] for s in students)
        assert r["energy"][dev]["value"] == pytest.approx(num / den)
    for baseline, variants in r["total_latency"].items():
        for variant, ratio in variants.items():
            num = deps[baseline]["derived_total_ms"][variant]
            den = deps["nonn"]["derived_total_ms"][variant]
            assert ratio["value"] == pytest.approx(num / den)
    for dep in deps.values():
        assert dep["derived_total_ms"]["measured"] == pytest.approx(dep["total_ms"]["p50"])
    # The per-node weights are the models' and the split's parameter counts.
    assert teacher["weight_bytes"] == saved["models"]["teacher"]["weight_bytes"]
    assert sum(n["params"] for n in deps["teacher_split"]["nodes"]) == saved["models"]["teacher"]["params"]
    assert sum(n["params"] for n in deps["compressed_split"]["nodes"]) == saved["models"]["compressed"]["params"]
    assert sum(s["params"] for s in students) == saved["models"]["nonn"]["students_params_total"]
    head = saved["headline"]["wifi"]
    assert head["weight_memory"]["value"] == r["weight_memory"]["value"]
    measured = r["total_latency"]["compressed_split"]["measured"]["value"]
    assert head["total_latency_vs_compressed_split"]["value"] == measured
    int8 = deps["nonn_int8"]["nodes"]
    assert r["int8"]["weight_memory"]["value"] == pytest.approx(
        teacher["weight_bytes"] / max(n["weight_bytes"] for n in int8))
    assert r["int8"]["weight_bytes_vs_fp32"]["value"] < 0.5  # int8 weights, float scales and biases
    assert r["int8"]["compute_vs_fp32"]["value"] == pytest.approx(
        max(n["compute_ms"]["p50"] for n in int8) / max(n["compute_ms"]["p50"] for n in deps["nonn_pixels"]["nodes"]))
    assert r["total_latency_pixels"]["compressed_split"]["value"] == pytest.approx(
        deps["compressed_split_pixels"]["total_ms"]["p50"] / deps["nonn_pixels"]["total_ms"]["p50"])
    assert "int8 and fp32 students against the teacher" in md and "measured / floor" in md

    from nonn.bench import sweep
    table = sweep.summarise({2: saved, 4: saved})
    assert [(row["k"], row["link"]) for row in table["rows"]] == [(2, "wifi"), (4, "wifi")]
    row = table["rows"][0]
    assert row["ratios"]["compressed_split"] == pytest.approx(
        deps["compressed_split"]["total_ms"]["p50"] / deps["nonn"]["total_ms"]["p50"])
    assert row["node_processes"] == 10 and row["cores_shared"] == (2 > saved["config"]["cpu_count"])
    assert all(x["value"] >= 33 for x in table["reached"])
    swept = {**table, "config": {"ks": [2, 4], "teacher_arch": "t", "student_arch": "s", "links": ["wifi"],
                                 "cpu_count": 2, "shaping": saved["config"]["shaping"]},
             "note": "n", "split_rule": "r", "compressed_arch": {2: "a", 4: "b"}}
    sweep.write_outputs(swept, tmp_path / "sweep")
    assert sorted(p.name for p in (tmp_path / "sweep" / "plots").iterdir()) == ["sweep_ratio.png",
                                                                               "sweep_total_latency.png"]
    assert "nodes share cores" in (tmp_path / "sweep" / "bench.md").read_text()
