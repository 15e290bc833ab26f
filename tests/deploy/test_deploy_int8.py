"""`nonn deploy-local --int8`: the int8 students served by the same node and gateway processes, unchanged."""

import json

from deploy_support import copy_run

from nonn.cli import main


def test_int8_students_deploy_and_match_their_in_process_labels(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    assert main(["deploy-local", str(run), "--int8", "--insecure", "--limit", "24", "--requests", "4",
                 "--concurrency", "2"]) == 0
    result = json.loads((run / "deploy-int8.json").read_text())
    assert result["export"]["dtype"] == "int8" and result["export"]["manifest"].endswith("onnx-int8/manifest.json")
    acc = result["accuracy"]
    assert acc["images"] == 24 and acc["degraded"] == 0 and acc["match"], acc
    # same pixels path: the nodes get uint8 pixels (an 8x8 image plus its header), not float32
    per_node = result["bytes_per_inference"]["per_node"]
    assert all(64 < n["gateway_to_node"] < 4 * 64 for n in per_node)
    manifest = json.loads((run / "onnx-int8" / "manifest.json").read_text())
    assert manifest["node_pixels"] is True and manifest["quantization"]["dtype"] == "int8"
    assert "deploy-int8.json" in capsys.readouterr().out
