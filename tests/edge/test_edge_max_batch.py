"""Bounded work per request: a node states its largest batch, refuses a larger one
RESOURCE_EXHAUSTED before any compute, and the gateway never sends it more."""

import asyncio

import grpc
import numpy as np
import pytest
from edge_support import IMAGE, SHAPE, SIZES

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.node import MAX_BATCH_KEY, MEMORY_BOUND_BYTES, StudentServicer, default_max_batch, load_session
from nonn.edge.options import DEFAULT_MAX_MESSAGE_BYTES
from nonn.edge.tensors import to_tensor


class CountingSession:
    """A real ONNX Runtime session that counts its runs."""

    def __init__(self, session):
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


class Context:
    """What the servicer reads from a call's context in Features."""

    def abort(self, code, details):
        raise grpc.RpcError(code, details)

    def set_trailing_metadata(self, metadata):
        self.trailing = metadata

    def time_remaining(self):
        return None


def test_an_oversized_batch_is_refused_before_any_compute(artifacts):
    session = CountingSession(load_session(artifacts.students[0]))
    servicer = StudentServicer(session, max_batch_images=8)
    with pytest.raises(grpc.RpcError) as info:
        servicer.Features(to_tensor(np.zeros((9, *SHAPE), np.uint8)), Context())
    assert info.value.args[0] == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 8" in info.value.args[1]
    assert session.runs == 0
    servicer.Features(to_tensor(np.zeros((8, *SHAPE), np.float32)), Context())
    assert session.runs == 1


def test_the_default_is_derived_from_the_reply_limit_and_a_memory_bound(artifacts):
    per_input = 4 * int(np.prod(SHAPE))
    assert default_max_batch(["N", *SHAPE], SIZES[0], DEFAULT_MAX_MESSAGE_BYTES) == MEMORY_BOUND_BYTES // (64 * per_input)
    assert default_max_batch(["N", *SHAPE], 100, 4096) == (4096 - 256) // 400  # a small reply limit binds
    assert default_max_batch(["N", 3, 224, 224], 1000, 4096) == 1
    servicer = StudentServicer(load_session(artifacts.students[0]))
    assert servicer.max_batch_images == default_max_batch(["N", *SHAPE], SIZES[0], DEFAULT_MAX_MESSAGE_BYTES)


def test_the_stream_states_the_cap_and_real_nodes_refuse_above_it(processes, artifacts):
    _, address = processes.node(artifacts.students[0], "--max-batch-images", "4")
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.StudentStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Features(to_tensor(np.zeros((50_000, *SHAPE), np.uint8)), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-batch-images" in info.value.details()
        call = stub.FeaturesStream(iter([pb.FeaturesRequest(id=1, tensor=to_tensor(np.zeros((5, *SHAPE), np.float32)))]),
                                   timeout=10)
        assert dict(call.initial_metadata())[MAX_BATCH_KEY] == "4"
        assert [(r.id, r.code) for r in call] == [(1, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])]


def test_the_gateway_never_sends_a_node_more_than_it_states(processes, gateways, artifacts):
    from nonn.edge.client import StreamingClient

    nodes = [processes.node(model, "--max-batch-images", "2")[1] for model in artifacts.students]
    address = gateways(artifacts.manifest, nodes, insecure=True, deadline_s=10.0, max_batch=16)

    async def burst():
        async with StreamingClient(address, insecure=True) as client:
            return await asyncio.gather(*(client.classify(IMAGE, timeout_s=20) for _ in range(60)),
                                        return_exceptions=True)

    results = asyncio.run(burst())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    sizes = [n["batch_size"] for r in results for n in r["nodes"]]
    assert max(sizes) == 2  # batched (the images did wait for each other), never above the node's cap


def test_memory_is_given_back_after_a_large_batch_only(artifacts):
    servicer = StudentServicer(load_session(artifacts.students[0]))
    servicer.Features(to_tensor(np.zeros((16, *SHAPE), np.float32)), Context())  # 48 KiB: kept for reuse
    assert servicer._memory.trims == 0
    large = servicer.max_batch_images  # 1365 images of 3x8x8: 1 MiB of float32 input
    servicer.Features(to_tensor(np.zeros((large, *SHAPE), np.float32)), Context())
    assert servicer._memory.trims == (1 if servicer._memory._malloc_trim is not None else 0)
