"""The gateway against real node processes: parity with ONNX Runtime, failures that name
the node within the deadline, degraded mode, reconnection after a node restarts."""

import json
import re
import shutil
import time

import grpc
import numpy as np
import pytest
from edge_support import IMAGE, SHAPE, SIZES, free_port, reference
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.client import classify, to_message
from nonn.edge.errors import EdgeError, GatewayError, TensorError
from nonn.edge.gateway import GatewayServicer, serve_gateway
from nonn.edge.manifest import load_manifest


def test_classify_matches_onnxruntime(gateways, shared_nodes, artifacts):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True)
    result = classify(address, IMAGE, insecure=True, timeout_s=10)
    logits = reference(artifacts)
    np.testing.assert_allclose(result["logits"], logits, atol=1e-5)
    assert result["label"] == int(np.argmax(logits)) and result["class_name"] == str(result["label"])
    assert abs(sum(result["probabilities"]) - 1) < 1e-5 and not result["degraded"]
    request_bytes = result["nodes"][0]["bytes_sent"]
    assert request_bytes > int(np.prod(SHAPE)) * 4  # the float32 tensor plus its header
    assert result["bytes_sent"] == len(SIZES) * request_bytes
    assert [n["bytes_received"] > 4 * n_k for n, n_k in zip(result["nodes"], SIZES)] == [True, True]
    assert result["bytes_received"] == sum(n["bytes_received"] for n in result["nodes"])
    assert [n["address"] for n in result["nodes"]] == shared_nodes
    assert all(n["compute_ms"] > 0 and n["round_trip_ms"] >= n["compute_ms"] for n in result["nodes"])
    assert 0 < result["gateway_ms"] <= result["client_ms"]


@pytest.mark.parametrize("variant", ["chw-float", "rank4", "hw-gray", "hwc-gray", "rgba"])
def test_layouts_and_channel_conversion(gateways, shared_nodes, artifacts, variant):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True)
    if variant == "chw-float":
        image, expected = IMAGE.transpose(2, 0, 1).astype(np.float32), IMAGE
    elif variant == "rank4":
        image, expected = IMAGE[None], IMAGE
    elif variant in ("hw-gray", "hwc-gray"):
        gray = IMAGE[:, :, 0]
        image = gray if variant == "hw-gray" else gray[:, :, None]
        expected = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        image = np.concatenate([IMAGE, np.full(IMAGE.shape[:2] + (1,), 255, np.uint8)], axis=2)
        expected = IMAGE
    result = classify(address, image, insecure=True, timeout_s=10)
    np.testing.assert_allclose(result["logits"], reference(artifacts, expected), atol=1e-5)


@pytest.mark.parametrize("image, message", [
    (np.zeros((9, 8, 3), np.uint8), "expected an image of 8x8 pixels"),
    (np.full((8, 8, 3), 300.0, np.float32), r"must lie in \[0, 255\]"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or Inf"),
    (np.zeros((8, 8, 3), np.int64), "image dtype 'int64' is not supported"),
])
def test_bad_images_are_invalid_argument(gateways, shared_nodes, artifacts, image, message):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True)
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GatewayStub(channel).Classify(to_message(image), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, info.value.details()), info.value.details()


def test_ambiguous_layout_needs_the_layout_field(tmp_path, artifacts):
    manifest = load_manifest(artifacts.manifest)
    servicer = GatewayServicer(manifest, ["127.0.0.1:1", "127.0.0.1:2"], deadline_s=1, degraded=False,
                               credentials=None, max_message_bytes=1 << 20, intra_op_threads=1)
    try:
        servicer._shape = (1, 3, 3, 3)
        object.__setattr__(manifest, "input_shape", (3, 3, 3))
        cube = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
        with pytest.raises(TensorError, match="ambiguous"):
            servicer.preprocess(pb.Image(shape=[3, 3, 3], dtype="uint8", data=cube.tobytes()))
        hwc = servicer.preprocess(pb.Image(shape=[3, 3, 3], dtype="uint8", data=cube.tobytes(), layout="HWC"))
        chw = servicer.preprocess(pb.Image(shape=[3, 3, 3], dtype="uint8", data=cube.tobytes(), layout="CHW"))
        assert not np.allclose(hwc, chw)
    finally:
        servicer.close()


def test_killed_node_is_named_within_the_deadline_and_used_again_after_restart(
        gateways, processes, shared_nodes, artifacts):
    port = free_port()
    proc, node1 = processes.node(artifacts.students[1], listen=f"127.0.0.1:{port}")
    address = gateways(artifacts.manifest, [shared_nodes[0], node1], insecure=True, deadline_s=1.0)
    classify(address, IMAGE, insecure=True, timeout_s=10)  # connected and working

    processes.kill(proc)
    start = time.monotonic()
    with pytest.raises(GatewayError) as info:
        classify(address, IMAGE, insecure=True, timeout_s=10)
    assert time.monotonic() - start < 1.5
    assert info.value.code == "UNAVAILABLE"
    assert f"node 1 ({node1})" in info.value.details and shared_nodes[0] not in info.value.details

    processes.node(artifacts.students[1], listen=f"127.0.0.1:{port}")
    deadline = time.monotonic() + 15
    while True:  # the channel reconnects on its own, within its short backoff
        try:
            result = classify(address, IMAGE, insecure=True, timeout_s=10)
            break
        except GatewayError:
            assert time.monotonic() < deadline, "the gateway did not reconnect to the restarted node"
            time.sleep(0.1)
    np.testing.assert_allclose(result["logits"], reference(artifacts), atol=1e-5)


def test_slow_node_is_deadline_exceeded_naming_it(gateways, processes, shared_nodes, artifacts):
    _, slow = processes.node(artifacts.students[1], "--delay-ms", "2000")
    address = gateways(artifacts.manifest, [shared_nodes[0], slow], insecure=True, deadline_s=0.3)
    start = time.monotonic()
    with pytest.raises(GatewayError) as info:
        classify(address, IMAGE, insecure=True, timeout_s=10)
    assert time.monotonic() - start < 1.0
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert f"node 1 ({slow}) did not answer within 300 ms" in info.value.details

    address = gateways(artifacts.manifest, [shared_nodes[0], slow], insecure=True, deadline_s=0.3, degraded=True)
    result = classify(address, IMAGE, insecure=True, timeout_s=10)
    assert result["degraded"] and result["missing_nodes"] == [slow]
    assert result["nodes"][1]["error"].startswith("DEADLINE_EXCEEDED") and 250 < result["gateway_ms"] < 1000
    np.testing.assert_allclose(result["logits"], reference(artifacts, missing=[1]), atol=1e-5)


def test_degraded_mode_zero_fills_a_missing_node(gateways, shared_nodes, artifacts):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    address = gateways(artifacts.manifest, [shared_nodes[0], dead], insecure=True, deadline_s=1.0, degraded=True)
    result = classify(address, IMAGE, insecure=True, timeout_s=10)
    assert result["degraded"] and result["missing_nodes"] == [dead]
    assert result["nodes"][1]["missing"]
    assert result["nodes"][1]["error"].startswith(f"UNAVAILABLE: node 1 ({dead}) is unavailable")
    assert result["bytes_received"] == result["nodes"][0]["bytes_received"]
    np.testing.assert_allclose(result["logits"], reference(artifacts, missing=[1]), atol=1e-5)


def test_degraded_mode_still_fails_when_every_node_is_missing(gateways, artifacts):
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    address = gateways(artifacts.manifest, dead, insecure=True, deadline_s=1.0, degraded=True)
    with pytest.raises(GatewayError, match="all nodes failed") as info:
        classify(address, IMAGE, insecure=True, timeout_s=10)
    assert info.value.code == "UNAVAILABLE"


def test_nodes_in_the_wrong_order_are_a_failed_precondition(gateways, shared_nodes, artifacts):
    address = gateways(artifacts.manifest, shared_nodes[::-1], insecure=True)
    with pytest.raises(GatewayError) as info:
        classify(address, IMAGE, insecure=True, timeout_s=10)
    assert info.value.code == "FAILED_PRECONDITION"
    # the first wrong reply fails the request: either node may be first
    wrong = {0: f"node 0 ({shared_nodes[1]}) sent features of shape [1, 6], expected [1, 4]; "
                "is it serving student_0.onnx?",
             1: f"node 1 ({shared_nodes[0]}) sent features of shape [1, 4], expected [1, 6]; "
                "is it serving student_1.onnx?"}
    # the gateway checks the models' SHA-256 when a link comes up, before any features are compared
    wrong |= {k: f"node {k} ({shared_nodes[1 - k]}) serves a model with SHA-256" for k in (0, 1)}
    assert any(message in info.value.details for message in wrong.values()), info.value.details


def test_gateway_health_and_reflection(gateways, shared_nodes, artifacts):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True)
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="nonn.v1.Gateway"), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert "nonn.v1.Gateway" in ProtoReflectionDescriptorDatabase(channel).get_services()


def test_manifest_checks(tmp_path, artifacts, shared_nodes):
    copy = tmp_path / "onnx"
    shutil.copytree(artifacts.dir, copy)
    with pytest.raises(EdgeError, match="lists 2 students but --nodes names 1"):
        serve_gateway(copy / "manifest.json", shared_nodes[:1], insecure=True)
    with pytest.raises(EdgeError, match="HOST:PORT"):
        serve_gateway(copy / "manifest.json", "localhost,127.0.0.1:1", insecure=True)
    with pytest.raises(EdgeError, match="--insecure"):
        serve_gateway(copy / "manifest.json", shared_nodes)
    with open(copy / "student_1.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgeError, match="student_1.onnx does not match its SHA-256"):
        serve_gateway(copy / "manifest.json", shared_nodes, insecure=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format"] = 2
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgeError, match="format 2"):
        serve_gateway(copy / "manifest.json", shared_nodes, insecure=True)


class _FeaturesOnly(pb_grpc.StudentServicer):
    """A node of an older runtime: Features, no FeaturesStream."""

    def __init__(self, model):
        from nonn.edge.node import StudentServicer, load_session

        self.inner = StudentServicer(load_session(model))

    def Features(self, request, context):
        return self.inner.Features(request, context)


@pytest.mark.parametrize("node", ["older runtime", "too many streams"])
def test_nodes_without_a_stream_are_called_per_request(gateways, shared_nodes, artifacts, monkeypatch, node):
    from nonn.edge import node as node_module
    from nonn.edge import serving

    if node == "older runtime":
        server, port, _, _ = serving.start_server(
            lambda s: pb_grpc.add_StudentServicer_to_server(_FeaturesOnly(artifacts.students[1]), s),
            ["nonn.v1.Student"], "127.0.0.1:0", None, True, max_message_bytes=1 << 20, workers=2)
    else:
        monkeypatch.setattr(node_module, "MAX_STREAMS", 0)
        server, port = node_module.serve_node(artifacts.students[1], insecure=True)
    try:
        address = gateways(artifacts.manifest, [shared_nodes[0], f"127.0.0.1:{port}"], insecure=True)
        for _ in range(3):  # the first request learns, the next ones call Features directly
            result = classify(address, IMAGE, insecure=True, timeout_s=10)
            np.testing.assert_allclose(result["logits"], reference(artifacts), atol=1e-5)
            assert not result["degraded"] and result["nodes"][1]["compute_ms"] > 0
    finally:
        server.stop(0)


def test_requests_travel_over_one_long_lived_stream(gateways, shared_nodes, artifacts):
    from nonn.edge import serving
    from nonn.edge.node import StudentServicer, load_session

    calls = {"Features": 0, "FeaturesStream": 0}

    class Counting(StudentServicer):
        def Features(self, request, context):
            calls["Features"] += 1
            return super().Features(request, context)

        def FeaturesStream(self, request_iterator, context):
            calls["FeaturesStream"] += 1
            return super().FeaturesStream(request_iterator, context)

    servicer = Counting(load_session(artifacts.students[1]))
    server, port, _, _ = serving.start_server(
        lambda s: pb_grpc.add_StudentServicer_to_server(servicer, s),
        ["nonn.v1.Student"], "127.0.0.1:0", None, True, max_message_bytes=1 << 20, workers=2, stream_threads=4)
    try:
        address = gateways(artifacts.manifest, [shared_nodes[0], f"127.0.0.1:{port}"], insecure=True)
        for _ in range(3):
            result = classify(address, IMAGE, insecure=True, timeout_s=10)
            np.testing.assert_allclose(result["logits"], reference(artifacts), atol=1e-5)
        assert calls == {"Features": 0, "FeaturesStream": 1}
    finally:
        server.stop(0)
