"""The Partition record: K groups of teacher filter indices plus the figures that judge them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nonn.errors import PartitionError

SCHEMA = 1


@dataclass
class Partition:
    """K disjoint groups of filter indices covering 0..C-1, with quality figures.

    ``modularity`` is measured on the UNTHRESHOLDED normalised W graph (every positive
    weight is an edge); ``modularity_thresholded`` on the graph that community detection
    saw. ``intra_weight_share`` is the share of all W weight inside groups,
    ``isolated_fraction`` the share of filters left without an edge by the threshold
    (``threshold`` is in units of max(W)). ``num_communities`` counts Louvain communities
    that have at least one edge (isolated filters are not counted). Quality figures are
    None for a random control made without a W; ``rule`` is set by the caller.
    """

    groups: list[list[int]]
    method: str = "louvain"
    modularity: float | None = None
    modularity_thresholded: float | None = None
    num_communities: int | None = None
    isolated_fraction: float | None = None
    intra_weight_share: float | None = None
    threshold: float | None = None
    threshold_percentile: float | None = None
    resolution: float | None = None
    max_imbalance: float | None = None
    seed: int | None = None
    rule: str | None = None
    communities: list[list[int]] = field(default_factory=list)
    # With threshold_percentile "auto": [percentile, modularity on W] of every candidate tried.
    threshold_scores: list[list[float]] | None = None

    @property
    def k(self) -> int:
        return len(self.groups)

    @property
    def num_filters(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def sizes(self) -> list[int]:
        return [len(g) for g in self.groups]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain ints, floats and strings)."""
        d = dataclasses.asdict(self)
        d["groups"] = [[int(f) for f in g] for g in self.groups]
        d["communities"] = [[int(f) for f in c] for c in self.communities]
        return {"schema": SCHEMA, "k": self.k, "num_filters": self.num_filters, "sizes": self.sizes, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Partition:
        """Inverse of to_dict; checks that the groups hold every filter 0..C-1 exactly once."""
        if not isinstance(d, dict) or "groups" not in d:
            raise PartitionError("partition data has no 'groups'; rerun `nonn partition RUN_DIR`")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {key: value for key, value in d.items() if key in names}
        try:
            kwargs["groups"] = [[int(f) for f in g] for g in d["groups"]]
            kwargs["communities"] = [[int(f) for f in c] for c in d.get("communities", [])]
        except (TypeError, ValueError) as exc:
            raise PartitionError(
                f"partition groups are not lists of integers ({exc}); rerun `nonn partition RUN_DIR`"
            ) from exc
        flat = sorted(f for g in kwargs["groups"] for f in g)
        if not kwargs["groups"] or any(not g for g in kwargs["groups"]) or flat != list(range(len(flat))):
            raise PartitionError(
                "partition groups must be non-empty and hold every filter 0..C-1 exactly once; "
                "rerun `nonn partition RUN_DIR`"
            )
        if "sizes" in d and list(d["sizes"]) != [len(g) for g in kwargs["groups"]]:
            raise PartitionError("partition 'sizes' do not match its groups; rerun `nonn partition RUN_DIR`")
        return cls(**kwargs)
