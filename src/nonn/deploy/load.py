"""Drive a gateway from concurrent streaming clients (one connection each) and record every
request's timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One classification as the client saw it and as the Prediction reports it."""

    index: int
    label: int
    e2e_ms: float  # measured by the client around the RPC
    gateway_ms: float
    head_ms: float
    compute_ms: tuple[float, ...]  # per node, reported by the node
    round_trip_ms: tuple[float, ...]  # per node, seen by the gateway
    bytes_sent: tuple[int, ...]  # per node: gateway -> node
    bytes_received: tuple[int, ...]  # per node: node -> gateway
    degraded: bool
    batch_size: tuple[int, ...] = ()  # per node: images in the node message this one travelled in

    @classmethod
    def of_prediction(cls, index: int, prediction, client_ms: float) -> Sample:
        """From a nonn.v1.Prediction and the client's end-to-end milliseconds."""
        nodes = prediction.nodes
        return cls(index, prediction.label, client_ms, prediction.gateway_ms, prediction.head_ms,
                   tuple(n.compute_ms for n in nodes), tuple(n.round_trip_ms for n in nodes),
                   tuple(n.bytes_sent for n in nodes), tuple(n.bytes_received for n in nodes), prediction.degraded,
                   tuple(n.batch_size for n in nodes))

    @property
    def overhead_ms(self) -> float:
        """End-to-end latency minus the slowest node's compute: what the distribution costs."""
        return self.e2e_ms - max(self.compute_ms, default=0.0)


@dataclass
class Run:
    samples: list[Sample]  # in request order
    wall_s: float
    concurrency: int
    connections: int = 1

    @property
    def throughput(self) -> float:
        return len(self.samples) / self.wall_s if self.wall_s > 0 else 0.0


def drive(make_client: Callable, images: np.ndarray, *, requests: int, concurrency: int, connections: int = 1,
          warmup: int = 0, timeout_s: float = 10.0, layout: str = "HWC") -> Run:
    """Send `requests` images (image i is images[i % len(images)]) from `concurrency` closed-loop
    senders sharing `connections` clients from `make_client()` (StreamingClients, like a
    load generator's workers sharing its connections); one event loop in this thread drives
    them all, so the load costs little CPU beside the system it measures. After `warmup`
    unrecorded requests per sender, all start together."""
    if requests < 1 or concurrency < 1 or connections < 1 or len(images) == 0:
        raise ValueError("requests, concurrency, connections and images must all be positive")
    concurrency = min(concurrency, requests)
    return asyncio.run(_drive(make_client, images, requests, concurrency, min(connections, concurrency), warmup,
                              timeout_s, layout))


async def _drive(make_client, images, requests, concurrency, connections, warmup, timeout_s, layout) -> Run:
    from nonn.edge.client import to_message

    samples: list[Sample | None] = [None] * requests
    counter = iter(range(requests))
    messages = [to_message(image, layout) for image in images]  # encoded once, as a camera's frames would be
    clients = [make_client() for _ in range(connections)]
    senders = [clients[i % connections] for i in range(concurrency)]
    try:
        async def warm(seed: int, client) -> None:
            for i in range(warmup):
                await client.predict(messages[(seed + i) % len(messages)], timeout_s=timeout_s)

        async def send(client) -> None:
            while (index := next(counter, None)) is not None:
                prediction, client_ms = await client.predict(messages[index % len(messages)], timeout_s=timeout_s)
                samples[index] = Sample.of_prediction(index, prediction, client_ms)

        await asyncio.gather(*(warm(seed, c) for seed, c in enumerate(senders)))
        start = time.perf_counter()
        tasks = [asyncio.ensure_future(send(c)) for c in senders]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        wall = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return Run([s for s in samples if s is not None], wall, concurrency, connections)


def percentiles(values, qs=(50, 90, 99)) -> dict[str, float]:
    """{"p50": ..., "p90": ..., "p99": ..., "mean": ...} of a sequence (linear interpolation)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return {**{f"p{q}": float("nan") for q in qs}, "mean": float("nan")}
    out = {f"p{q}": float(np.percentile(arr, q)) for q in qs}
    out["mean"] = float(arr.mean())
    return out


def summarize(run: Run) -> dict:
    """Latency percentiles (end to end, gateway, slowest node compute, overhead) and throughput."""
    s = run.samples
    return {
        "concurrency": run.concurrency,
        "connections": run.connections,
        "requests": len(s),
        "wall_s": run.wall_s,
        "throughput_per_s": run.throughput,
        "latency_ms": percentiles(x.e2e_ms for x in s),
        "gateway_ms": percentiles(x.gateway_ms for x in s),
        "slowest_node_compute_ms": percentiles(max(x.compute_ms, default=0.0) for x in s),
        "overhead_ms": percentiles(x.overhead_ms for x in s),
        "node_batch_size": percentiles(b for x in s for b in x.batch_size),
        "degraded": sum(x.degraded for x in s),
    }
