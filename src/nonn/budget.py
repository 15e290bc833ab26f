"""Fit students to devices: read a budget, cost a student exactly as it runs on one device, search a family.

A student's cost is its backbone up to the final map, the bridge (1x1 conv, BN, ReLU) and the pooling, counted on
the real ``StudentNode``; the backbone's own classifier never runs in NoNN and is not counted. The memory budget
bounds the weights (parameters x ``dtype_bytes``), the MAC budget one forward pass of one image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import torch

from .distill.nonn_model import StudentNode
from .errors import ConfigError, ModelError
from .models import create_model, list_families, list_models
from .models.cost import FLOAT32_BYTES, count_macs, count_params, weight_bytes

# How a user raises each limit; named in BudgetError messages.
MEMORY_OPTION = "--device-memory"
MACS_OPTION = "--device-macs"

_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)

# Part of the inputs hash of stages that size students by a budget: bump it whenever the search would
# choose differently (new candidates: the sizes nonn.models registers for wrn and mbv2), so runs sized by the
# old search are planned again.
SEARCH_VERSION = 2  # 2: WRN widths below 1


class BudgetError(ConfigError):
    """No student fits the budget; ``suggested`` is the smallest budget (same dtype) that would work."""

    def __init__(self, message: str, suggested: Budget | None = None):
        super().__init__(message)
        self.suggested = suggested


def _parse(text: str | int, units: dict[str, int], what: str, forms: str) -> int:
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    m = _NUMBER.fullmatch(text) if isinstance(text, str) else None
    if m is None or m.group(2).lower() not in units:
        raise ConfigError(f"cannot read {text!r} as {what}; write a number with an optional unit, e.g. {forms}")
    return int(Decimal(m.group(1)) * units[m.group(2).lower()])  # floor: a limit is never rounded up


def parse_bytes(text: str | int) -> int:
    """'200KB' -> 200000; units B, KB, MB, GB (powers of 1000) and KiB, MiB, GiB (of 1024), any case."""
    return _parse(text, _BYTE_UNITS, "a memory size", "200KB, 1.5MB, 512KiB (units B, KB, MB, GB, KiB, MiB, GiB)")


def parse_count(text: str | int) -> int:
    """'30M' -> 30000000; suffixes K, M, G (10^3, 10^6, 10^9), any case."""
    return _parse(text, _COUNT_UNITS, "a count", "30M, 1.5G, 500K (suffixes K, M, G)")


def _human(n: int, units: tuple[tuple[str, int], ...], sep: str) -> str:
    suffix, factor = next(((s, f) for s, f in reversed(units) if n >= f), units[0])
    return f"{n}{sep}{suffix}" if factor == 1 else f"{n / factor:.1f}{sep}{suffix}"


def _at_least(n: int, units: tuple[tuple[str, int], ...]) -> str:
    """``n`` in the largest unit of ``units`` that it reaches, 3 significant digits, rounded up: for suggestions."""
    suffix, factor = next(((s, f) for s, f in reversed(units) if n >= f), units[0])
    if factor == 1:
        return f"{n}{suffix}"
    digits = max(0, 2 - math.floor(math.log10(n / factor)))
    q = -(-n * 10**digits // factor)  # ceiling division, exact in integers
    text = f"{Decimal(q).scaleb(-digits):f}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text}{suffix}"


_BYTES_SHOWN = (("B", 1), ("KB", 10**3), ("MB", 10**6), ("GB", 10**9))
_COUNT_SHOWN = (("", 1), ("K", 10**3), ("M", 10**6), ("G", 10**9))


def format_bytes(n: int) -> str:
    """312400 -> '312.4 KB'."""
    return _human(n, _BYTES_SHOWN, " ")


def format_count(n: int) -> str:
    """1234567 -> '1.2M'."""
    return _human(n, _COUNT_SHOWN, "")


@dataclass(frozen=True)
class Budget:
    """What one device allows: weight memory in bytes and/or MACs per image; at least one is given."""

    memory_bytes: int | None = None
    macs: int | None = None
    dtype_bytes: int = FLOAT32_BYTES

    def __post_init__(self):
        if self.memory_bytes is None and self.macs is None:
            raise ConfigError(f"a device budget needs a memory limit or a MAC limit; set {MEMORY_OPTION} "
                              f"(e.g. 200KB) or {MACS_OPTION} (e.g. 30M)")
        for value, option in ((self.memory_bytes, MEMORY_OPTION), (self.macs, MACS_OPTION)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"{option} must be a positive amount, got {value!r}")
        if not isinstance(self.dtype_bytes, int) or self.dtype_bytes <= 0:
            raise ConfigError(f"bytes per weight must be a positive integer (4 for float32), got {self.dtype_bytes!r}")

    @classmethod
    def parse(cls, memory: str | None = None, macs: str | None = None, dtype_bytes: int = FLOAT32_BYTES) -> Budget:
        """From strings such as ``Budget.parse("200KB", "30M")``."""
        return cls(None if memory is None else parse_bytes(memory), None if macs is None else parse_count(macs),
                   dtype_bytes)

    def fits(self, cost: Cost) -> bool:
        return ((self.memory_bytes is None or cost.weight_bytes <= self.memory_bytes)
                and (self.macs is None or cost.macs <= self.macs))

    def __str__(self) -> str:
        parts = [] if self.memory_bytes is None else [format_bytes(self.memory_bytes)]
        parts += [] if self.macs is None else [f"{format_count(self.macs)} MACs"]
        return " / ".join(parts)


@dataclass(frozen=True)
class Cost:
    """What one student costs on its device; ``filters`` is its bridge width (its share of teacher filters)."""

    params: int
    weight_bytes: int
    macs: int
    filters: int


def _check_shapes(in_shape, map_size, num_filters) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    in_shape, map_size = tuple(int(v) for v in in_shape), tuple(int(v) for v in map_size)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ConfigError(f"the input shape must be channels, height, width (e.g. 3, 32, 32), got {in_shape}")
    if len(map_size) != 2 or min(map_size) < 1:
        raise ConfigError(f"the teacher's map size must be height, width (e.g. 8, 8), got {map_size}")
    if int(num_filters) < 1:
        raise ConfigError(f"a student needs at least one teacher filter, got {num_filters}")
    return in_shape, map_size, int(num_filters)


def _node(arch: str, in_shape: tuple, num_classes: int, num_filters: int, map_size: tuple) -> StudentNode:
    """The real StudentNode that one device runs, with a ``num_filters``-wide bridge."""
    backbone = create_model(arch, num_classes=num_classes, in_channels=in_shape[0])
    try:
        return StudentNode(backbone, num_filters, map_size).eval()
    except TypeError:
        raise ModelError(f"architecture '{arch}' cannot be a student: give it forward_features() and "
                         "num_features") from None


def _count_on(device: str, arch: str, in_shape: tuple, num_classes: int, map_size: tuple):
    with torch.device(device):
        node = _node(arch, in_shape, num_classes, 1, map_size)
        ran, bridge_in = set(), []
        hooks = [m.register_forward_pre_hook(lambda mod, _inp: ran.add(mod)) for m in node.modules()]
        hooks.append(node.bridge.register_forward_pre_hook(lambda _m, inp: bridge_in.append(inp[0].shape)))
        try:
            macs = count_macs(node, in_shape)
        finally:
            for h in hooks:
                h.remove()
        macs -= count_macs(node.bridge, torch.zeros(bridge_in[0]))
    params = count_params(p for m in ran - set(node.bridge.modules()) for p in m.parameters(recurse=False))
    return params, macs, node, tuple(bridge_in[0])


@lru_cache(maxsize=1024)
def _count_without_bridge(arch: str, in_shape: tuple, num_classes: int, map_size: tuple):
    """One forward of the real StudentNode: (params, MACs) of all that ran except the bridge; the node; the bridge's
    input shape. On the meta device (shapes only: no memory, no arithmetic) unless the model needs real tensors."""
    try:
        return _count_on("meta", arch, in_shape, num_classes, map_size)
    except (RuntimeError, NotImplementedError):  # e.g. a user's model that loads weights or reads values
        return _count_on("cpu", arch, in_shape, num_classes, map_size)


@lru_cache(maxsize=8192)
def _count(arch: str, in_shape: tuple, num_classes: int, num_filters: int, map_size: tuple) -> tuple[int, int]:
    """(parameters of the modules that run, MACs) of one forward of the real StudentNode with this bridge width.

    The part before the bridge does not depend on the width, so it is counted once per architecture; the bridge of
    a StudentNode of each width is then counted on its own, on the input shape it gets inside the node.
    """
    params, macs, ref, bridge_in = _count_without_bridge(arch, in_shape, num_classes, map_size)
    with torch.device(next(ref.parameters()).device):
        bridge = StudentNode(ref.backbone, num_filters, map_size).bridge.eval()
        macs += count_macs(bridge, torch.zeros(bridge_in))
    return params + count_params(bridge), macs


def student_cost(arch: str, *, in_shape, num_classes: int, num_filters: int, map_size,
                 dtype_bytes: int = FLOAT32_BYTES) -> Cost:
    """Parameters, weight bytes and MACs of backbone ``arch`` plus a ``num_filters``-wide bridge on one device."""
    in_shape, map_size, num_filters = _check_shapes(in_shape, map_size, num_filters)
    params, macs = _count(arch, in_shape, int(num_classes), num_filters, map_size)
    return Cost(params, weight_bytes(params, dtype_bytes), macs, num_filters)


# What candidates() ranks on when it is not told the data: CIFAR's images, classes and teacher map.
_CIFAR = {"in_shape": (3, 32, 32), "num_classes": 10, "map_size": (8, 8)}


@lru_cache(maxsize=256)
def _ordered(names: tuple[str, ...], in_shape: tuple, num_classes: int, map_size: tuple) -> tuple[str, ...]:
    # Counted on the data the students will see: a user's model may only take its own input shape or classes.
    sizes = {a: _count_without_bridge(a, in_shape, num_classes, map_size)[0] for a in names}
    return tuple(sorted(names, key=lambda a: -sizes[a]))


def searchable_families() -> list[str]:
    """The registered families that list sizes (``list_models(family=f)``), in registration order: those a budget
    can search."""
    return [f for f in list_families() if list_models(family=f)]


def candidates(family: str | Sequence[str], *, in_shape=_CIFAR["in_shape"],
               num_classes: int = _CIFAR["num_classes"], map_size=_CIFAR["map_size"]) -> list[str]:
    """The family's student architectures from most to least capable (most parameters first), counted on inputs
    of ``in_shape`` with ``num_classes`` classes and a teacher map of ``map_size`` (CIFAR-10's unless given).

    ``family`` is a registered family with sizes ("wrn", "mbv2" or a user's), or a list of architecture names.
    """
    if isinstance(family, str):
        searchable = searchable_families()
        if family not in searchable:
            raise ConfigError(f"no student search for family '{family}'; use one of: {', '.join(searchable)} "
                              "(or give a list of architecture names)")
        names = tuple(list_models(family=family))
    else:
        names = tuple(dict.fromkeys(family))
        if not names:
            raise ConfigError("the list of candidate architectures is empty; name at least one, e.g. wrn-16-1")
    in_shape, map_size, _ = _check_shapes(in_shape, map_size, 1)
    return list(_ordered(names, in_shape, int(num_classes), map_size))


def _label(family: str | Sequence[str]) -> str:
    return family if isinstance(family, str) else "candidate"


def _rank(budget: Budget, cost: Cost) -> tuple[int, int]:
    # The limited resource decides "capable": weights when memory is limited, else MACs.
    return (cost.params, cost.macs) if budget.memory_bytes is not None else (cost.macs, cost.params)


def _no_fit(prefix: str, budget: Budget, costs: list[tuple[str, Cost]]) -> BudgetError:
    def excess(cost: Cost) -> float:  # how many times over the tighter limit
        return max(cost.weight_bytes / budget.memory_bytes if budget.memory_bytes else 0.0,
                   cost.macs / budget.macs if budget.macs else 0.0)
    arch, cost = min(costs, key=lambda ac: (excess(ac[1]), _rank(budget, ac[1])))
    raises, memory, macs = [], budget.memory_bytes, budget.macs
    if memory is not None and cost.weight_bytes > memory:
        text = _at_least(cost.weight_bytes, _BYTES_SHOWN)
        raises.append(f"{MEMORY_OPTION} to at least {text}")
        memory = parse_bytes(text)
    if macs is not None and cost.macs > macs:
        text = _at_least(cost.macs, _COUNT_SHOWN)
        raises.append(f"{MACS_OPTION} to at least {text}")
        macs = parse_count(text)
    return BudgetError(
        f"{prefix}: the smallest, {arch} with a {cost.filters}-filter bridge, needs {format_bytes(cost.weight_bytes)} "
        f"and {format_count(cost.macs)} MACs; raise {' and '.join(raises)}",
        Budget(memory, macs, budget.dtype_bytes))


def choose_student(family: str | Sequence[str], budget: Budget, *, in_shape, num_classes: int, num_filters: int,
                   map_size) -> tuple[str, Cost]:
    """The most capable architecture of ``family`` whose student (with a ``num_filters`` bridge) fits ``budget``."""
    shapes = {"in_shape": in_shape, "num_classes": num_classes, "map_size": map_size}
    costs = [(a, student_cost(a, num_filters=num_filters, dtype_bytes=budget.dtype_bytes, **shapes))
             for a in candidates(family, **shapes)]
    fitting = [ac for ac in costs if budget.fits(ac[1])]
    if not fitting:
        raise _no_fit(f"no {_label(family)} student fits {budget}", budget, costs)
    return max(fitting, key=lambda ac: _rank(budget, ac[1]))


def balanced_sizes(num_filters: int, k: int) -> list[int]:
    """``num_filters`` split into ``k`` near-equal parts, largest first."""
    if not 1 <= k <= num_filters:
        raise ConfigError(f"K must be between 1 and the teacher's {num_filters} filters, got {k}")
    return [num_filters // k + (1 if i < num_filters % k else 0) for i in range(k)]


def plan_students(family: str | Sequence[str], budget: Budget, *, in_shape, num_classes: int, map_size,
                  k: int | None = None, partition_sizes: list[int] | None = None, num_filters: int | None = None) -> list[tuple[str, Cost]]:
    """One (arch, cost) per student, in partition order: the most capable fit for each partition's size.

    Give the ``partition_sizes`` (students may differ), or ``num_filters`` and ``k`` for a balanced split.
    """
    if (partition_sizes is None) == (num_filters is None):
        raise ConfigError("plan_students needs either partition_sizes or num_filters (with k), not both")
    if partition_sizes is None:
        if k is None:
            raise ConfigError("plan_students with num_filters needs k, the number of students")
        partition_sizes = balanced_sizes(num_filters, k)
    elif k is not None and k != len(partition_sizes):
        raise ConfigError(f"K = {k} but the partition has {len(partition_sizes)} groups; make them agree")
    chosen = {}
    for size in sorted(set(partition_sizes), reverse=True):  # the largest part fails first, with the telling message
        chosen[size] = choose_student(family, budget, in_shape=in_shape, num_classes=num_classes,
                                      num_filters=size, map_size=map_size)
    return [chosen[size] for size in partition_sizes]


def choose_k(family: str | Sequence[str], budget: Budget, *, in_shape, num_classes: int, num_filters: int, map_size,
             k_max: int | None = None) -> tuple[int, list[tuple[str, Cost]]]:
    """The smallest K whose balanced split of ``num_filters`` gives students that all fit, and their plan."""
    k_max = num_filters if k_max is None else k_max
    if not 1 <= k_max <= num_filters:
        raise ConfigError(f"the largest K must be between 1 and the teacher's {num_filters} filters, got {k_max}")

    def fits(k: int) -> bool:  # the largest part decides: the others need no more than it
        try:
            choose_student(family, budget, in_shape=in_shape, num_classes=num_classes,
                           num_filters=-(-num_filters // k), map_size=map_size)
            return True
        except BudgetError:
            return False

    # More students only shrink the bridge, so if K = k_max does not fit, no K does.
    if not fits(k_max):
        largest = -(-num_filters // k_max)
        shapes = {"in_shape": in_shape, "num_classes": num_classes, "map_size": map_size}
        costs = [(a, student_cost(a, num_filters=largest, dtype_bytes=budget.dtype_bytes, **shapes))
                 for a in candidates(family, **shapes)]
        raise _no_fit(f"no K up to {k_max} makes {_label(family)} students fit {budget} (at K = {k_max}, at most "
                      f"{largest} filter{'s' if largest > 1 else ''} each)", budget, costs)
    lo, hi = 1, k_max  # fits(k) is monotone in k: bisect for the first K that fits
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo, plan_students(family, budget, in_shape=in_shape, num_classes=num_classes, map_size=map_size,
                             k=lo, num_filters=num_filters)


def format_plan(plan: list[tuple[str, Cost]]) -> str:
    """A table of the students: architecture, bridge filters, parameters, weight bytes and MACs, with totals."""
    rows = [("student", "arch", "filters", "params", "weights", "MACs")]
    for i, (arch, c) in enumerate(plan):
        rows.append((str(i), arch, str(c.filters), f"{c.params:,}", format_bytes(c.weight_bytes), f"{c.macs:,}"))
    rows.append(("total", "", str(sum(c.filters for _, c in plan)), f"{sum(c.params for _, c in plan):,}",
                 format_bytes(sum(c.weight_bytes for _, c in plan)), f"{sum(c.macs for _, c in plan):,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
