"""Device budgets in the pipeline: K when it is 'auto', and each student's architecture from its partition size."""

from __future__ import annotations

from .. import budget as search
from ..budget import Budget, BudgetError, Cost, choose_k, plan_students
from ..config import Config


def search_version(cfg: Config) -> dict[str, int]:
    """What a stage that sizes students adds to its inputs hash: the search's version, when a
    budget sizes them (runs without a budget keep their hashes)."""
    return {"budget_search": search.SEARCH_VERSION} if cfg.budget.given else {}


def budget_of(cfg: Config) -> Budget | None:
    b = cfg.budget
    return Budget.parse(b.memory, b.macs, b.dtype_bytes) if b.given else None


def resolve_k(cfg: Config, *, num_filters: int, in_shape, num_classes: int, map_size) -> int:
    """students.k, or the smallest K whose students fit the budget when it is 'auto'."""
    if cfg.students.k != "auto":
        return int(cfg.students.k)
    k, _ = choose_k(cfg.students.family, budget_of(cfg), in_shape=in_shape, num_classes=num_classes,
                    num_filters=num_filters, map_size=map_size)
    return k


def plan(cfg: Config, partition_sizes: list[int], *, in_shape, num_classes: int,
         map_size) -> list[tuple[str, Cost | None]]:
    """(architecture, cost) per student: chosen from the family under a budget, else students.arch for all."""
    budget = budget_of(cfg)
    if budget is None:
        return [(cfg.students.arch, None)] * len(partition_sizes)
    return plan_students(cfg.students.family, budget, in_shape=in_shape, num_classes=num_classes,
                         map_size=map_size, partition_sizes=partition_sizes)


def fits(cfg: Config, partition_sizes: list[int], **shape) -> bool:
    try:
        plan(cfg, partition_sizes, **shape)
        return True
    except BudgetError:
        return False
