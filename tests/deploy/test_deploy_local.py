"""`nonn deploy-local` on a trained run: real node and gateway processes, real gRPC over mutual TLS."""

import json

from deploy_support import pid_alive

from nonn.rundir import file_sha256


def test_deploy_json_has_the_documented_fields(deployed):
    run, result, stdout = deployed
    assert result["format"] == 1 and result["security"] == "mtls"
    assert (run / "certs" / "ca.pem").is_file() and (run / "certs" / "node_1.key").is_file()
    manifest = json.loads((run / "onnx" / "manifest.json").read_text())
    assert manifest["source"]["students_sha256"] == file_sha256(run / "students.pt")
    roles = [(p["role"], p["index"]) for p in result["processes"]]
    assert roles == [("node", 0), ("node", 1), ("gateway", None), ("client", None)]
    assert all(p["peak_rss_bytes"] > 10 * 2**20 for p in result["processes"])
    assert [row["concurrency"] for row in result["latency"]] == [1, 8]
    for row in result["latency"]:
        assert row["requests"] == 16 and row["throughput_per_s"] > 0
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["slowest_node_compute_ms"]["p50"] > 0 and row["degraded"] == 0
    b = result["bytes_per_inference"]
    sizes = manifest["partition_sizes"]
    assert b["client_to_gateway"] > 8 * 8  # a raw 8x8 uint8 image plus its header
    assert [n["node_to_gateway"] > 4 * n_k for n, n_k in zip(b["per_node"], sizes)] == [True, True]
    assert b["nodes_to_gateway"] == sum(n["node_to_gateway"] for n in b["per_node"])
    # the nodes normalise: each gets the 8x8 image as uint8 pixels (64 bytes and a header)
    assert b["gateway_to_nodes"] == 2 * b["per_node"][0]["gateway_to_node"]
    assert 64 < b["per_node"][0]["gateway_to_node"] < 4 * 64
    assert "deploy.json" in stdout and "OK" in stdout


def test_deployed_accuracy_equals_in_process_accuracy(deployed):
    _, result, _ = deployed
    acc = result["accuracy"]
    assert acc["images"] == 24 and acc["degraded"] == 0
    assert acc["deployed"] == acc["in_process"] and acc["label_agreement"] == 1.0 and acc["match"]


def test_every_process_is_gone_afterwards(deployed):
    _, result, _ = deployed
    pids = [p["pid"] for p in result["processes"] if p["role"] != "client"]
    assert len(pids) == 3
    assert not [pid for pid in pids if pid_alive(pid)]


def test_a_second_deploy_reuses_export_and_certs(deployed, tmp_path, capsys):
    from deploy_support import copy_run

    from nonn.cli import main

    run = copy_run(deployed[0], tmp_path / "run")
    ca = (run / "certs" / "ca.pem").read_bytes()
    assert main(["deploy-local", str(run), "--limit", "4", "--requests", "2", "--concurrency", "2"]) == 0
    result = json.loads((run / "deploy.json").read_text())
    assert result["export"]["exported_now"] is False and (run / "certs" / "ca.pem").read_bytes() == ca
    assert result["accuracy"]["match"] and [r["concurrency"] for r in result["latency"]] == [2]
    assert "[export]" not in capsys.readouterr().out


def test_an_export_from_before_pixel_nodes_is_made_again(deployed, tmp_path, capsys):
    from deploy_support import copy_run

    from nonn.cli import main

    run = copy_run(deployed[0], tmp_path / "run")
    manifest = run / "onnx" / "manifest.json"
    old = json.loads(manifest.read_text())
    del old["node_pixels"]
    manifest.write_text(json.dumps(old))
    assert main(["deploy-local", str(run), "--limit", "4", "--requests", "2", "--concurrency", "2"]) == 0
    assert "it predates nodes that take uint8 pixels" in capsys.readouterr().out
    result = json.loads((run / "deploy.json").read_text())
    assert result["export"]["exported_now"] is True and result["accuracy"]["match"]
    assert json.loads(manifest.read_text())["node_pixels"] is True
