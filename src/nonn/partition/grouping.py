"""Grouping communities into exactly K balanced groups that hold every filter once.

Balance guarantee: every group size lies in ``size_bounds(C, K, max_imbalance)``, so
``largest <= max_imbalance * smallest`` whenever any grouping of C filters into K groups can
meet it, i.e. whenever ceil(C/K) <= max_imbalance * floor(C/K). For max_imbalance = 1.5
that is every C that K divides and every C >= 2K (so every K <= 8 for C = 256). When no
grouping can meet it (C < 2K, C not a multiple of K) the sizes differ by at most one, the
best possible: largest <= max(max_imbalance, ceil(C/K) / floor(C/K)) * smallest, always.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

from nonn.errors import PartitionError


def check_k(k: int, num_filters: int) -> int:
    """Return k as an int, or raise PartitionError when it is not in 1..num_filters."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise PartitionError(f"k={k!r} is not an integer; choose 1 <= k <= {num_filters}")
    if not 1 <= k <= num_filters:
        raise PartitionError(f"k={k} is out of range for the {num_filters} filters; choose 1 <= k <= {num_filters}")
    return int(k)


def check_max_imbalance(max_imbalance: float) -> float:
    """Return max_imbalance as a float, or raise PartitionError when it is below 1 or not finite."""
    m = float(max_imbalance)
    if not (math.isfinite(m) and m >= 1.0):
        raise PartitionError(f"max_imbalance={max_imbalance!r} must be a finite number >= 1 (default 1.5)")
    return m


def size_bounds(num_filters: int, k: int, max_imbalance: float) -> tuple[int, int]:
    """(smallest, largest) allowed group size: hi <= max_imbalance * lo when achievable at all.

    Among the feasible lower bounds the one that allows the largest group is chosen, so that
    big communities stay whole as often as possible.
    """
    c = num_filters
    best = None
    for lo in range(1, c // k + 1):
        hi = min(math.floor(max_imbalance * lo + 1e-9), c - (k - 1) * lo)
        if hi * k >= c and (best is None or hi >= best[1]):
            best = (lo, hi)
    if best is None:  # no sizes within the ratio exist: the most even split is the best possible
        best = (c // k, -(-c // k))
    return best


def connection_order(members: Iterable[int], adjacency: np.ndarray) -> list[int]:
    """Members in breadth-first order from the strongest hub, heaviest edges first.

    A prefix of this order is a connected, strongly linked chunk, so cutting a community
    along it keeps linked filters together. Disconnected parts follow, hub first.
    """
    members = sorted(int(m) for m in members)
    sub = adjacency[np.ix_(members, members)]
    strength = sub.sum(axis=1)
    unvisited = set(range(len(members)))
    order: list[int] = []
    while unvisited:
        start = max(unvisited, key=lambda i: (strength[i], -i))
        unvisited.remove(start)
        queue = deque([start])
        while queue:
            u = queue.popleft()
            order.append(u)
            nbrs = [int(v) for v in np.flatnonzero(sub[u] > 0) if v in unvisited]
            nbrs.sort(key=lambda v: (-sub[u, v], v))
            for v in nbrs:
                unvisited.remove(v)
                queue.append(v)
    return [members[i] for i in order]


def group_communities(
    communities: Sequence[Iterable[int]], adjacency: np.ndarray, k: int, max_imbalance: float = 1.5
) -> list[list[int]]:
    """Exactly k non-empty balanced groups of all filters, keeping communities whole where possible.

    Communities of two or more filters are placed largest first into the least-filled
    group; one that does not fit is cut along its connection order. Single filters (mostly
    the isolated ones) are filler, placed last into the least-filled group. Finally filters
    move from the largest group to any group below the lower size bound, the least attached
    filter first. Deterministic: ties go to the lowest index. Groups come out sorted inside
    and ordered by their smallest filter.
    """
    c = adjacency.shape[0]
    k = check_k(k, c)
    lo, hi = size_bounds(c, k, check_max_imbalance(max_imbalance))

    pieces: list[list[int]] = []
    fillers: list[int] = []
    for com in communities:
        com = sorted(int(f) for f in com)
        if len(com) >= 2:
            pieces.append(connection_order(com, adjacency))
        else:
            fillers.extend(com)
    seen = sorted([f for p in pieces for f in p] + fillers)
    if seen != list(range(c)):
        raise ValueError("communities must hold every filter 0..C-1 exactly once")

    groups: list[list[int]] = [[] for _ in range(k)]

    def least_filled() -> int:
        return min(range(k), key=lambda g: (len(groups[g]), g))

    while pieces:
        pieces.sort(key=lambda p: (-len(p), min(p)))
        piece = pieces.pop(0)
        g = least_filled()
        room = hi - len(groups[g])  # >= 1: fewer than C placed, so the least filled is below C/k <= hi
        if len(piece) <= room:
            groups[g].extend(piece)
        else:
            groups[g].extend(piece[:room])
            pieces.append(connection_order(piece[room:], adjacency))
    for f in sorted(fillers):
        groups[least_filled()].append(f)

    # Top up groups below lo. Some group is above lo whenever one is below (sizes sum to C >= k*lo).
    while True:
        small = min(range(k), key=lambda g: (len(groups[g]), g))
        if len(groups[small]) >= lo:
            break
        big = max(range(k), key=lambda g: (len(groups[g]), -g))
        members = np.asarray(groups[big], dtype=np.intp)
        own = adjacency[np.ix_(members, members)].sum(axis=1)
        to_small = adjacency[np.ix_(members, np.asarray(groups[small], dtype=np.intp))].sum(axis=1)
        cost = own - to_small
        # Among the cheapest, the last placed: filler, or the tail of a connection order.
        pick = int(np.flatnonzero(cost <= cost.min())[-1])
        groups[small].append(groups[big].pop(pick))

    result = sorted((sorted(g) for g in groups), key=lambda g: g[0])
    sizes = [len(g) for g in result]
    assert sum(sizes) == c and min(sizes) >= lo and max(sizes) <= hi, (sizes, lo, hi)
    return result
