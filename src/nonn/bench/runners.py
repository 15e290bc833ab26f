"""What the hub does in the case study: one inference of a deployment (or one probe message) as a Sample, and
the interleaved rounds in which every deployment is measured alike."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .deployments import Deployment, Prepared
from .profiles import LinkProfile

MIN_SAMPLES = 3


@dataclass
class Sample:
    total_ms: float
    compute_ms: list[float]
    bytes_in: list[int]     # hub -> node, serialized request
    bytes_out: list[int]    # node -> hub, serialized reply
    logits: np.ndarray
    hub_ms: float = 0.0       # total minus the node round trips: gateway or driver work, client hop
    modelled_ms: float = 0.0  # serialization time added in in-process mode


class DeploymentRunner:
    """One inference of one deployment, as the hub runs it."""

    def __init__(self, deployment: Deployment, addresses: list[str], gateway: str | None, prep: Prepared,
                 link: LinkProfile, in_process: bool, timeout_s: float):
        self.deployment, self.prep, self.link, self.in_process = deployment, prep, link, in_process
        self.timeout_s = timeout_s
        if deployment.kind == "gateway":
            from nonn.edge.client import GatewayClient
            self.client = GatewayClient(gateway, insecure=True)
        else:
            from .chain import ChainClient
            self.client = ChainClient(addresses, timeout_s=timeout_s)
        self.worst_diff = 0.0

    def _wire_ms(self, nbytes: int) -> float:
        return (nbytes + self.link.overhead_bytes) * 8 / self.link.rate_bps * 1000.0

    def __call__(self, i: int) -> Sample:
        n = len(self.prep.images)
        if self.deployment.kind == "gateway":
            r = self.client.classify(self.prep.images[i % n], timeout_s=self.timeout_s, layout="HWC")
            s = Sample(r["client_ms"], [x["compute_ms"] for x in r["nodes"]], [x["bytes_sent"] for x in r["nodes"]],
                       [x["bytes_received"] for x in r["nodes"]], np.asarray(r["logits"], dtype=np.float32),
                       r["client_ms"] - max(x["round_trip_ms"] for x in r["nodes"]))
            if self.in_process:  # the K links carry their messages at the same time
                s.modelled_ms = max(self._wire_ms(a) + self._wire_ms(b) for a, b in zip(s.bytes_in, s.bytes_out))
        else:
            x = (self.prep.images[i % n].transpose(2, 0, 1)[None] if self.deployment.first_hop == "uint8"
                 else self.prep.inputs[i % n])
            out, total, hops = self.client.infer(x)
            s = Sample(total, [h.compute_ms for h in hops], [h.bytes_sent for h in hops],
                       [h.bytes_received for h in hops], out[0], total - sum(h.round_trip_ms for h in hops))
            if self.in_process:  # one node after the other
                s.modelled_ms = sum(self._wire_ms(h.bytes_sent) + self._wire_ms(h.bytes_received) for h in hops)
        s.total_ms += s.modelled_ms
        ref = self.deployment.reference[i % n]
        self.worst_diff = max(self.worst_diff, float(np.abs(s.logits.reshape(ref.shape) - ref).max()))
        return s

    def close(self) -> None:
        self.client.close()



class ProbeRunner:
    """A zero tensor of one shape sent to the probe node (a sink model): what that message costs on the link."""

    def __init__(self, address: str, shape: tuple[int, ...], link: LinkProfile, in_process: bool,
                 timeout_s: float):
        from .chain import ChainClient

        self.client = ChainClient([address], timeout_s=timeout_s)
        self.x = np.zeros(shape, dtype=np.float32)
        self.link, self.in_process = link, in_process

    def __call__(self, _i: int) -> Sample:
        out, total, hops = self.client.infer(self.x)
        h = hops[0]
        modelled = 0.0
        if self.in_process:
            modelled = sum((n + self.link.overhead_bytes) * 8 / self.link.rate_bps * 1000.0
                           for n in (h.bytes_sent, h.bytes_received))
        return Sample(total + modelled, [h.compute_ms], [h.bytes_sent], [h.bytes_received], out.ravel(),
                      total - h.round_trip_ms, modelled)

    def close(self) -> None:
        self.client.close()


def probe_shapes(prep: Prepared) -> dict[str, tuple[int, ...]]:
    """The messages worth calibrating: a tiny one, the input image and every activation crossing a cut."""
    c, h, w = prep.input_shape
    # "pixels": a float32 message of the uint8 image's byte count (the sink model takes float32 only)
    shapes = {"tiny": (1, 1, 1, 1), "image": (1, *prep.input_shape), "pixels": (1, 1, 1, max(1, c * h * w // 4))}
    for d in prep.deployments:
        if d.kind == "chain":
            for node in d.nodes[:-1]:
                shape = tuple(node["out_shape"])
                shapes.setdefault("x".join(map(str, shape)), shape)
    return shapes


def interleave(runners: dict, requests: int, warmup: int, max_seconds: float) -> tuple[dict, int]:
    """Rounds of one call per runner; a runner stops after ``requests`` samples, or after ``max_seconds`` of its
    own time once it has MIN_SAMPLES. Returns (samples by name, rounds)."""
    names = list(runners)
    for i in range(warmup):
        for name in names:
            runners[name](i)
    samples: dict[str, list[Sample]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0.0)
    active, rounds = list(names), 0
    while active:
        for name in list(active):
            t0 = time.perf_counter()
            samples[name].append(runners[name](rounds))
            spent[name] += time.perf_counter() - t0
            got = len(samples[name])
            if got >= requests or (spent[name] >= max_seconds and got >= MIN_SAMPLES):
                active.remove(name)
        rounds += 1
    return samples, rounds

