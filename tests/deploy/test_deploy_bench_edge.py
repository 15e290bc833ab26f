"""`nonn bench-edge` with tiny untrained architectures: every figure is there and adds up (no timing limits)."""

import json
import os

import pytest
from deploy_support import pid_alive

from nonn.cli import main


def test_bench_edge_reports_consistent_figures(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench-edge", "--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--input", "1x8x8",
                 "--requests", "15", "--rounds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "UNTRAINED" in printed and "gateway overhead" in printed
    r = json.loads((out / "bench_edge.json").read_text())
    assert r["untrained"] is True and r["config"]["k"] == 2 and r["config"]["security"] == "mtls"
    for level in ("c1", "c8"):
        s = r["samples"][level]
        assert len(s["e2e_ms"]) == len(s["overhead_ms"]) == 30  # 15 per round, pooled
        for e2e, compute, overhead, gateway in zip(s["e2e_ms"], s["slowest_compute_ms"], s["overhead_ms"],
                                                   s["gateway_ms"]):
            assert overhead == pytest.approx(e2e - compute, abs=1e-9)
            assert 0 < compute < gateway < e2e
        assert r["gateway_overhead_ms"][level]["p50"] == pytest.approx(
            sorted(s["overhead_ms"])[14] / 2 + sorted(s["overhead_ms"])[15] / 2)
    t = r["throughput"]
    assert t["c1_per_s"] > 0 and t["c8_per_s"] > 0 and t["ceiling_per_s"] > 0
    assert len(t["rounds"]) == 2
    for row in t["rounds"]:  # each round's ratio is taken within the round; the bound is its best batch size
        assert row["c8_over_ceiling"] == pytest.approx(row["c8_per_s"] / row["ceiling_per_s"])
        assert row["c8_separate_connections_over_ceiling"] == pytest.approx(
            row["c8_separate_connections_per_s"] / row["ceiling_per_s"])
        assert set(row["ceiling_by_batch"]) == {"1", "8"}
        assert row["ceiling_per_s"] == max(row["ceiling_by_batch"].values())
    assert t["c8_over_ceiling"] == pytest.approx(sum(row["c8_over_ceiling"] for row in t["rounds"]) / 2)
    assert t["ceiling_per_s"] == pytest.approx(sum(row["ceiling_per_s"] for row in t["rounds"]) / 2)
    assert r["ceiling"]["workers"] == 2 and r["ceiling"]["images"] >= 30
    m = r["memory"]
    assert len(m["node_peak_rss_bytes"]) == 2 and all(v > 10 * 2**20 for v in m["node_peak_rss_bytes"])
    assert m["teacher_process_peak_rss_bytes"] > 10 * 2**20
    assert m["teacher_over_node"] == pytest.approx(m["teacher_process_peak_rss_bytes"] / max(m["node_peak_rss_bytes"]))
    assert r["bytes_per_inference"]["nodes_to_gateway"] > 4 * sum(r["models"]["partition_sizes"])
    # each node receives the 1x8x8 image as uint8 pixels, not as 256 bytes of float32
    assert all(64 <= n["gateway_to_node"] < 4 * 64 for n in r["bytes_per_inference"]["per_node"])
    floor = r["transport_floor_ms"]
    assert len(floor["per_round_p50"]) == 2 and 0 < floor["p50"] <= floor["p99"]
    assert [(p["role"], p["index"]) for p in r["processes"]] == [
        ("node", 0), ("node", 1), ("gateway", None), ("floor worker", 0), ("floor worker", 1), ("floor relay", None)]
    assert not [p["pid"] for p in r["processes"] if pid_alive(p["pid"])]
    cores = sorted(os.sched_getaffinity(0))  # node k ran on core k (mod the cores), as the ceiling's worker k
    assert [p["cpu"] for p in r["processes"] if p["role"] == "node"] == [str(cores[k % len(cores)]) for k in (0, 1)]


def test_bench_edge_serves_int8_students(tmp_path):
    """--int8: the same cluster serves the quantized students; the manifest it served says how they were made."""
    out = tmp_path / "bench-int8"
    assert main(["bench-edge", "--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--input", "1x8x8",
                 "--requests", "10", "--rounds", "1", "--int8", "--insecure", "--out", str(out)]) == 0
    r = json.loads((out / "bench_edge.json").read_text())
    assert r["config"]["students_dtype"] == "int8"
    manifest = json.loads((out / "onnx-int8" / "manifest.json").read_text())
    q = manifest["quantization"]
    assert q["dtype"] == "int8" and q["check"] is None and q["calibration"]["split"].startswith("random")
    assert all(a < b / 2 for a, b in zip(q["weight_bytes"]["int8"], q["weight_bytes"]["fp32"]))
    assert r["throughput"]["c1_per_s"] > 0
