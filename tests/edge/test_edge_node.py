"""A real node process (torch blocked) on loopback: answers, validates, keeps serving."""

import re
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from edge_support import NO_TORCH, SHAPE, edge_env
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.node import COMPUTE_TIME_KEY
from nonn.edge.tensors import from_tensor, to_tensor

TIMEOUT = 10.0


@pytest.fixture
def channel(shared_nodes):
    with grpc.insecure_channel(shared_nodes[0]) as ch:
        yield ch


def features(channel, request):
    return pb_grpc.StudentStub(channel).Features.with_call(request, timeout=TIMEOUT)


def test_features_match_onnxruntime_and_report_compute_time(channel, artifacts):
    x = np.random.default_rng(3).normal(size=(2, *SHAPE)).astype(np.float32)  # a batch of two
    reply, call = features(channel, to_tensor(x))
    got = from_tensor(reply)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, artifacts.features(x)[0], atol=1e-6)
    metadata = dict(call.trailing_metadata())
    assert int(metadata[COMPUTE_TIME_KEY]) >= 0


def _bad_requests():
    good = np.zeros((1, *SHAPE), np.float32)
    nan = good.copy()
    nan[0, 1, 2, 3] = np.nan
    return {
        "shape": (to_tensor(np.zeros((1, 3, 9, 8), np.float32)),
                  r"expected a float32 tensor of shape \[N, 3, 8, 8\], got float32 \[1, 3, 9, 8\]"),
        "rank": (to_tensor(np.zeros((3, 8, 8), np.float32)), r"expected a float32 tensor .* got float32 \[3, 8, 8\]"),
        "dtype": (to_tensor(good.astype(np.uint8)), r"dtype 'uint8' is not supported; expected one of float32"),
        "nan": (to_tensor(nan), "NaN or Inf"),
        "bytes": (pb.Tensor(shape=[1, *SHAPE], dtype="float32", data=b"\0" * 10), "needs 768 bytes of data, got 10"),
    }


@pytest.mark.parametrize("case", sorted(_bad_requests()))
def test_bad_requests_are_invalid_argument_and_the_node_keeps_serving(channel, case):
    request, message = _bad_requests()[case]
    with pytest.raises(grpc.RpcError) as info:
        features(channel, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, info.value.details() or ""), info.value.details()
    reply, _ = features(channel, to_tensor(np.ones((1, *SHAPE), np.float32)))
    assert from_tensor(reply).shape == (1, 4)


def test_oversized_message_is_rejected_and_the_node_keeps_serving(channel):
    # the shared nodes run with --max-message-bytes 65536
    with pytest.raises(grpc.RpcError) as info:
        features(channel, to_tensor(np.zeros((128, *SHAPE), np.float32)))  # 98 KB
    assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    reply, _ = features(channel, to_tensor(np.ones((1, *SHAPE), np.float32)))
    assert from_tensor(reply).shape == (1, 4)


def test_health_is_serving_and_reflection_lists_the_student(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "nonn.v1.Student"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "nonn.v1.Student" in services and "grpc.health.v1.Health" in services


def test_torch_is_unimportable_in_the_node_process():
    # the shared nodes run under the same NO_TORCH prelude; prove the prelude does block torch
    code = NO_TORCH.split("sys.argv")[0] + "import torch"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode != 0 and "import of torch halted" in result.stderr


def test_plain_module_entry_point_serves_and_stops_on_sigterm(processes, artifacts):
    proc, address = processes.node(artifacts.students[1], block_torch=False)
    with grpc.insecure_channel(address) as ch:
        reply, _ = features(ch, to_tensor(np.ones((1, *SHAPE), np.float32)))
        assert from_tensor(reply).shape == (1, 6)
    start = time.monotonic()
    proc.terminate()
    assert proc.wait(timeout=10) == 0 and time.monotonic() - start < 5


def test_serving_without_tls_or_insecure_exits_2_with_one_line(artifacts):
    result = subprocess.run(
        [sys.executable, "-m", "nonn.edge", "node", "--model", str(artifacts.students[0]), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, check=False, timeout=60, env=edge_env(),
    )
    assert result.returncode == 2
    assert result.stderr == "error: pass --tls-cert/--tls-key (make them with `nonn certs DIR`) or --insecure\n"
    assert result.stdout == ""


def test_missing_model_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nonn.edge", "node", "--model", str(tmp_path / "nope.onnx"), "--insecure"],
        capture_output=True, text=True, check=False, timeout=60, env=edge_env(),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: model ") and result.stderr.count("\n") == 1


def _stream_request(request_id, array, timeout_us=5_000_000):
    return pb.FeaturesRequest(id=request_id, tensor=to_tensor(array), timeout_us=timeout_us)


def test_features_stream_answers_every_request_by_id(channel, artifacts):
    rng = np.random.default_rng(5)
    images = [rng.normal(size=(1, *SHAPE)).astype(np.float32) for _ in range(3)]
    bad = np.zeros((1, 3, 9, 8), np.float32)
    requests = [_stream_request(10 + i, x) for i, x in enumerate(images)]
    requests.insert(1, _stream_request(99, bad))
    replies = list(pb_grpc.StudentStub(channel).FeaturesStream(iter(requests), timeout=TIMEOUT))
    assert [r.id for r in replies] == [10, 99, 11, 12]  # in order, one reply each
    failed = replies[1]
    assert failed.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not failed.HasField("features")
    assert re.search(r"expected a float32 tensor of shape \[N, 3, 8, 8\], got float32 \[1, 3, 9, 8\]", failed.error)
    for reply, x in zip([replies[0], *replies[2:]], images):
        assert reply.code == 0 and reply.error == "" and reply.compute_us >= 0
        np.testing.assert_allclose(from_tensor(reply.features), artifacts.features(x)[0], atol=1e-6)


def test_features_stream_holds_messages_like_a_link(processes, artifacts):
    """With an emulated delay, messages on one stream travel at the same time, and one that
    cannot arrive before its caller gives up is answered DEADLINE_EXCEEDED."""
    _, address = processes.node(artifacts.students[0], "--delay-ms", "150")
    x = np.ones((1, *SHAPE), np.float32)
    requests = [_stream_request(i, x) for i in range(4)] + [_stream_request(7, x, timeout_us=100_000)]
    with grpc.insecure_channel(address) as ch:
        start = time.monotonic()
        replies = list(pb_grpc.StudentStub(ch).FeaturesStream(iter(requests), timeout=TIMEOUT))
        elapsed = time.monotonic() - start
    by_id = {r.id: r for r in replies}
    assert sorted(by_id) == [0, 1, 2, 3, 7]
    assert all(by_id[i].code == 0 and from_tensor(by_id[i].features).shape == (1, 4) for i in range(4))
    assert by_id[7].code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert 0.3 <= elapsed < 4 * 0.3  # 2 x 150 ms, not 4 x 2 x 150 ms one after the other


def test_an_impossible_shape_fails_its_request_only(channel, artifacts):
    x = np.ones((1, *SHAPE), np.float32)
    huge = pb.Tensor(shape=[0, 2**40, 2**40], dtype="float32", data=b"")
    requests = [_stream_request(1, x), pb.FeaturesRequest(id=2, tensor=huge), _stream_request(3, x)]
    replies = list(pb_grpc.StudentStub(channel).FeaturesStream(iter(requests), timeout=TIMEOUT))
    assert [r.id for r in replies] == [1, 2, 3]
    assert replies[1].code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "too large" in replies[1].error
    assert replies[0].code == replies[2].code == 0
