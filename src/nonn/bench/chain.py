"""Drive a layer-split pipeline over the edge runtime: node 0 gets the input, its reply goes to node 1, ...

The driver plays the hub (the Wi-Fi access point, where the input comes from and the answer
goes to): each hop is one `nonn.v1.Student/Features` call, and the reply of node k, already a
serialized Tensor, is sent unchanged as the request of node k+1. So every activation map
crosses two links (node k -> hub -> node k+1), as it does between two stations in
infrastructure-mode Wi-Fi.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from nonn.edge import nonn_pb2 as pb
from nonn.edge.channels import channel_options, open_channel
from nonn.edge.node import COMPUTE_TIME_KEY
from nonn.edge.tensors import from_tensor, to_tensor

FEATURES_METHOD = "/nonn.v1.Student/Features"


@dataclass(frozen=True)
class Hop:
    """One node's part of one inference, as the driver saw it."""

    compute_ms: float     # reported by the node (its ONNX Runtime call)
    round_trip_ms: float  # request sent to reply received, at the driver
    bytes_sent: int       # serialized request (driver -> node)
    bytes_received: int   # serialized reply (node -> driver)


def _compute_ms(metadata) -> float:
    for key, value in metadata or ():
        if key == COMPUTE_TIME_KEY:
            return int(value) / 1000.0
    return float("nan")


class ChainClient:
    """Plaintext channels to the K nodes of one pipeline, in order; ``infer`` runs one input through all."""

    def __init__(self, addresses: list[str], *, timeout_s: float = 60.0):
        self.addresses = list(addresses)
        self.timeout_s = float(timeout_s)
        options = channel_options(http_proxy=False)  # loopback and namespace links: never through a proxy
        self.channels = [open_channel(a, None, options) for a in self.addresses]
        self._calls = [ch.unary_unary(FEATURES_METHOD, request_serializer=None, response_deserializer=None)
                       for ch in self.channels]

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, float, list[Hop]]:
        """(output, end-to-end ms at the driver, hops) for one input [1, C, H, W]: normalised float32, or uint8
        pixels, which the first node normalises itself when its model carries its normalisation (a quarter of
        the bytes on the first hop)."""
        x = np.ascontiguousarray(x, dtype=np.uint8 if x.dtype == np.uint8 else np.float32)
        payload = to_tensor(x).SerializeToString()
        hops = []
        start = time.perf_counter()
        for call in self._calls:
            sent = time.perf_counter()
            raw, state = call.with_call(payload, timeout=self.timeout_s, wait_for_ready=True)
            hops.append(Hop(_compute_ms(state.trailing_metadata()), (time.perf_counter() - sent) * 1000.0,
                            len(payload), len(raw)))
            payload = raw
        total_ms = (time.perf_counter() - start) * 1000.0
        return from_tensor(pb.Tensor.FromString(payload)), total_ms, hops

    def close(self) -> None:
        for ch in self.channels:
            ch.close()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_sink_model(path) -> None:
    """An ONNX model taking any float32 [N, C, H, W] and answering its mean as [1, 1, 1, 1]: served by a probe
    node, it measures what moving a message of that size over a link costs, with next to no compute."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "c", "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], keepdims=1)], "sink", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
