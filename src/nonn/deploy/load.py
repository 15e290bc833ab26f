"""Drive a gateway from client threads (one connection each) and record every request's timings."""

from __future__ import annotations

import threading
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

    @classmethod
    def of(cls, index: int, result: dict) -> Sample:
        nodes = result["nodes"]
        return cls(index, int(result["label"]), float(result["client_ms"]), float(result["gateway_ms"]),
                   float(result["head_ms"]), tuple(n["compute_ms"] for n in nodes),
                   tuple(n["round_trip_ms"] for n in nodes), tuple(n["bytes_sent"] for n in nodes),
                   tuple(n["bytes_received"] for n in nodes), bool(result["degraded"]))

    @property
    def overhead_ms(self) -> float:
        """End-to-end latency minus the slowest node's compute: what the distribution costs."""
        return self.e2e_ms - max(self.compute_ms, default=0.0)


@dataclass
class Run:
    samples: list[Sample]  # in request order
    wall_s: float
    concurrency: int

    @property
    def throughput(self) -> float:
        return len(self.samples) / self.wall_s if self.wall_s > 0 else 0.0


def drive(make_client: Callable, images: np.ndarray, *, requests: int, concurrency: int, warmup: int = 0,
          timeout_s: float = 10.0, layout: str = "HWC") -> Run:
    """Send `requests` images (image i is images[i % len(images)]) from `concurrency` threads,
    each with its own client; after `warmup` unrecorded requests per thread, all start together."""
    if requests < 1 or concurrency < 1 or len(images) == 0:
        raise ValueError("requests, concurrency and images must all be positive")
    concurrency = min(concurrency, requests)
    samples: list[Sample | None] = [None] * requests
    errors: list[BaseException] = []
    stop = threading.Event()
    barrier = threading.Barrier(concurrency + 1)
    counter = iter(range(requests))
    lock = threading.Lock()

    def worker(seed: int) -> None:
        try:
            client = make_client()
        except BaseException as exc:  # noqa: BLE001 (handed to the main thread)
            errors.append(exc)
            stop.set()
            barrier.abort()
            return
        try:
            for i in range(warmup):
                client.classify(images[(seed + i) % len(images)], timeout_s=timeout_s, layout=layout)
            barrier.wait()
            while not stop.is_set():
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                result = client.classify(images[index % len(images)], timeout_s=timeout_s, layout=layout)
                samples[index] = Sample.of(index, result)
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()
            barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(t,), name=f"nonn-load-{t}", daemon=True)
               for t in range(concurrency)]
    for t in threads:
        t.start()
    try:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        start = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    except BaseException:
        stop.set()
        barrier.abort()
        raise
    if errors:
        raise errors[0]
    return Run([s for s in samples if s is not None], wall, concurrency)


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
        "requests": len(s),
        "wall_s": run.wall_s,
        "throughput_per_s": run.throughput,
        "latency_ms": percentiles(x.e2e_ms for x in s),
        "gateway_ms": percentiles(x.gateway_ms for x in s),
        "slowest_node_compute_ms": percentiles(max(x.compute_ms, default=0.0) for x in s),
        "overhead_ms": percentiles(x.overhead_ms for x in s),
        "degraded": sum(x.degraded for x in s),
    }
