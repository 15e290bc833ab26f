"""Pin this process to CPU cores, so that nodes sharing one machine each keep a core (and its
caches) to themselves, as they would on their own boards."""

from __future__ import annotations

import os

from nonn.edge.errors import EdgeError


def parse_cpus(text: str) -> set[int]:
    """"2" or "0,1" or "0-3" -> a set of core numbers; EdgeError when malformed."""
    cpus: set[int] = set()
    try:
        for part in str(text).split(","):
            first, _, last = part.strip().partition("-")
            lo, hi = int(first), int(last or first)
            if lo < 0 or hi < lo:
                raise ValueError
            cpus.update(range(lo, hi + 1))
    except ValueError:
        raise EdgeError(f"--cpu takes core numbers like 0, 0,1 or 0-3; got {text!r}") from None
    return cpus


def pin_process(cpus: set[int]) -> set[int]:
    """Run this thread, and every thread it starts from now on, on `cpus` only; call it before
    the server and ONNX Runtime start their threads. Returns the cores now allowed."""
    if not hasattr(os, "sched_setaffinity"):
        raise EdgeError("--cpu needs Linux (sched_setaffinity); leave it out on this system")
    available = os.sched_getaffinity(0)
    if not cpus <= available:
        raise EdgeError(f"--cpu {','.join(map(str, sorted(cpus)))} is not available here; this process may use "
                        f"cores {','.join(map(str, sorted(available)))}")
    os.sched_setaffinity(0, cpus)
    return os.sched_getaffinity(0)
