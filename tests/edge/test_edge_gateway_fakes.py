"""The gateway against in-process fake nodes: partition order, deadlines, a failing node,
degraded mode, and stopping from the serving loop's own thread."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from edge_support import IMAGE, SIZES
from fake_nodes import FakeStudent, fake_node, on_loop

from nonn.edge import serving
from nonn.edge.client import GatewayClient
from nonn.edge.errors import GatewayError
from nonn.edge.gateway import serve_gateway
from nonn.edge.options import GatewayOptions

FEATURES = [np.random.default_rng(k).normal(size=(1, n)).astype(np.float32) for k, n in enumerate(SIZES)]
BROKEN = (grpc.StatusCode.INTERNAL, "model failed: the fake broke")


def _student(k: int, **kwargs) -> FakeStudent:
    return FakeStudent(SIZES[k], compute=lambda x: np.repeat(FEATURES[k], len(x), axis=0), **kwargs)


class _Cluster:
    """Fake nodes (FakeStudent keywords per node) and an in-process gateway over them."""

    def __init__(self, artifacts, nodes: list[dict], **options):
        self.artifacts, self.nodes, self.options = artifacts, nodes, options

    def __enter__(self):
        self._fakes = [fake_node(_student(k, **kw)) for k, kw in enumerate(self.nodes)]
        self.addresses = [fake.__enter__() for fake in self._fakes]
        self.server, port = serve_gateway(self.artifacts.manifest, self.addresses, "127.0.0.1:0",
                                          GatewayOptions(insecure=True), **self.options)
        self.client = GatewayClient(f"127.0.0.1:{port}", insecure=True)
        return self

    def __exit__(self, *exc):
        self.client.close()
        self.server.stop(0)
        for fake in reversed(self._fakes):
            fake.__exit__(None, None, None)


def _logits(artifacts, *parts):
    return artifacts.head_logits(np.concatenate(parts, axis=1))[0]


def test_features_are_joined_in_partition_order(artifacts):
    with _Cluster(artifacts, [{}, {}]) as cluster:
        result = cluster.client.classify(IMAGE, layout="HWC")
    np.testing.assert_allclose(result["logits"], _logits(artifacts, *FEATURES), rtol=1e-5, atol=1e-5)
    assert [n["index"] for n in result["nodes"]] == [0, 1]
    assert [n["address"] for n in result["nodes"]] == cluster.addresses
    assert not result["degraded"] and all(not n["missing"] and n["batch_size"] == 1 for n in result["nodes"])


def test_a_node_slower_than_the_deadline_fails_the_request_naming_it(artifacts):
    with _Cluster(artifacts, [{}, {"delay_s": 1.5}], deadline_s=0.3) as cluster:
        start = time.perf_counter()
        with pytest.raises(GatewayError) as info:
            cluster.client.classify(IMAGE, layout="HWC")
        took = time.perf_counter() - start
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert f"node 1 ({cluster.addresses[1]}) did not answer within 300 ms" in str(info.value)
    assert took < 1.2


def test_a_failing_node_fails_the_request_without_waiting_for_the_others(artifacts):
    with _Cluster(artifacts, [{"delay_s": 1.0}, {"fail": lambda request, k: BROKEN}], deadline_s=5.0) as cluster:
        start = time.perf_counter()
        with pytest.raises(GatewayError) as info:
            cluster.client.classify(IMAGE, layout="HWC")
        took = time.perf_counter() - start
    assert info.value.code == "FAILED_PRECONDITION"
    assert f"node 1 ({cluster.addresses[1]}) answered INTERNAL: model failed" in str(info.value)
    assert took < 0.9  # node 0 would take 1 s


def test_degraded_mode_zero_fills_a_failing_node(artifacts):
    with _Cluster(artifacts, [{}, {"fail": lambda request, k: BROKEN}], degraded=True) as cluster:
        result = cluster.client.classify(IMAGE, layout="HWC")
    assert result["degraded"] and result["missing_nodes"] == [cluster.addresses[1]]
    assert result["nodes"][1]["missing"] and "INTERNAL" in result["nodes"][1]["error"]
    np.testing.assert_allclose(result["logits"], _logits(artifacts, FEATURES[0], np.zeros_like(FEATURES[1])),
                               rtol=1e-5, atol=1e-5)


def test_degraded_mode_zero_fills_a_node_slower_than_the_deadline(artifacts):
    with _Cluster(artifacts, [{"delay_s": 1.5}, {}], degraded=True, deadline_s=0.3) as cluster:
        result = cluster.client.classify(IMAGE, layout="HWC")
    assert result["missing_nodes"] == [cluster.addresses[0]]
    assert result["nodes"][0]["error"].startswith("DEADLINE_EXCEEDED")
    np.testing.assert_allclose(result["logits"], _logits(artifacts, np.zeros_like(FEATURES[0]), FEATURES[1]),
                               rtol=1e-5, atol=1e-5)


def test_degraded_mode_still_fails_when_every_node_fails(artifacts):
    fail = {"fail": lambda request, k: BROKEN}
    with _Cluster(artifacts, [fail, fail], degraded=True) as cluster, pytest.raises(GatewayError) as info:
        cluster.client.classify(IMAGE, layout="HWC")
    assert str(info.value).count("answered INTERNAL") == 2 and "all nodes failed" in str(info.value)


def test_closing_from_the_serving_loop_returns_at_once_and_closes_the_links(artifacts):
    with _Cluster(artifacts, [{}, {}]) as cluster:
        cluster.client.classify(IMAGE, layout="HWC")
        servicer = cluster.server.servicer

        async def close_here():  # as from inside an RPC handler
            start = time.perf_counter()
            servicer.close()
            return time.perf_counter() - start

        assert on_loop(close_here(), 30.0) < 1.0
        deadline = time.monotonic() + 5.0
        while (servicer.channels or servicer.links) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert servicer.channels == [] and servicer.links == []


def test_stopping_from_a_callback_on_the_serving_loop_returns_at_once_and_stops(artifacts):
    with _Cluster(artifacts, [{}, {}]) as cluster:
        cluster.client.classify(IMAGE, layout="HWC")
        took, stopped = [], []
        called = threading.Event()

        def stop_here():
            start = time.perf_counter()
            stopped.append(cluster.server.stop(0))
            took.append(time.perf_counter() - start)
            called.set()

        serving.event_loop().call_soon_threadsafe(stop_here)
        assert called.wait(30.0)
        assert took[0] < 1.0
        assert stopped[0].wait(5.0)
        assert cluster.server.servicer.channels == []
        with pytest.raises(GatewayError) as info:
            cluster.client.classify(IMAGE, layout="HWC", timeout_s=2.0)
        assert info.value.code == "UNAVAILABLE"
