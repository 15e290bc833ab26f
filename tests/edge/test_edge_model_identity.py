"""Paths and models that can be trusted: manifest file names stay in the manifest's folder; a node
states its model's SHA-256, can pin it, and the gateway refuses a node serving another model."""

import json
import shutil

import grpc
import pytest
from edge_support import IMAGE, build_artifacts, edge_env
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nonn.edge.client import classify
from nonn.edge.errors import EdgeError, GatewayError
from nonn.edge.files import sha256_file
from nonn.edge.manifest import load_manifest
from nonn.edge.node import MODEL_SHA256_KEY


@pytest.mark.parametrize("name", ["../../../../etc/shadow", "/etc/shadow", "sub/../../outside.onnx", "..\\up.onnx"])
def test_manifest_file_names_cannot_leave_its_folder(artifacts, tmp_path, name):
    folder = tmp_path / "onnx"
    shutil.copytree(artifacts.dir, folder)
    (tmp_path / "outside.onnx").write_bytes(b"secret")
    raw = json.loads((folder / "manifest.json").read_text())
    raw["students"][1]["file"] = name
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(EdgeError, match="outside its folder") as info:
        load_manifest(folder / "manifest.json")
    assert "/etc/shadow" not in str(info.value).replace(repr(name), "") and str(tmp_path / "outside.onnx") not in str(
        info.value)


def test_the_head_file_is_confined_too(artifacts, tmp_path):
    folder = tmp_path / "onnx"
    shutil.copytree(artifacts.dir, folder)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["head"]["file"] = "../head.onnx"
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(EdgeError, match="outside its folder"):
        load_manifest(folder / "manifest.json", verify=False)


def test_node_states_its_model_sha256_in_health_and_pins_it(processes, artifacts):
    digest = sha256_file(artifacts.students[0])
    _, address = processes.node(artifacts.students[0], "--expect-sha256", digest.upper())
    with grpc.insecure_channel(address) as channel:
        reply, call = health_pb2_grpc.HealthStub(channel).Check.with_call(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert dict(call.initial_metadata())[MODEL_SHA256_KEY] == digest
    import subprocess
    import sys

    wrong = subprocess.run([sys.executable, "-m", "nonn.edge", "node", "--model", str(artifacts.students[0]),
                            "--listen", "127.0.0.1:0", "--insecure", "--expect-sha256", "0" * 64],
                           capture_output=True, text=True, timeout=60, env=edge_env())
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "SHA-256" in wrong.stderr, wrong.stderr


def test_the_gateway_refuses_a_node_serving_another_model(processes, gateways, artifacts, tmp_path):
    other = build_artifacts(tmp_path, seed=1)  # same shapes, other weights: only the hashes tell them apart
    nodes = [processes.node(model)[1] for model in (other.students[0], artifacts.students[1])]
    address = gateways(artifacts.manifest, nodes, insecure=True, deadline_s=5.0)
    with pytest.raises(GatewayError) as info:
        classify(address, IMAGE, insecure=True, timeout_s=10)
    assert info.value.code == "FAILED_PRECONDITION"
    assert "node 0" in str(info.value) and "student_0.onnx" in str(info.value) and "SHA-256" in str(info.value)
    degraded = gateways(artifacts.manifest, nodes, insecure=True, deadline_s=5.0, degraded=True)
    result = classify(degraded, IMAGE, insecure=True, timeout_s=10)
    assert result["degraded"] and result["missing_nodes"] == [nodes[0]]
