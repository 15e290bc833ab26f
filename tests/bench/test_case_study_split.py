"""Layer-split baseline: cut points balance weight memory (checked against brute force and parameter
counts). That the exported pieces give the whole model's logits is checked in test_case_study_bench."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from nonn.bench.deployments import choose_compressed_arch
from nonn.bench.layer_split import balanced_ranges, plan_split, top_level_layers
from nonn.bench.synthetic import untrained_models
from nonn.errors import ModelError
from nonn.models import create_model

SHAPE = (1, 8, 8)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _brute_force(weights, k, cut_bytes):
    best = None
    for cuts in itertools.combinations(range(1, len(weights)), k - 1):
        bounds = [0, *cuts, len(weights)]
        key = (max(sum(weights[a:b]) for a, b in zip(bounds, bounds[1:])), sum(cut_bytes[c - 1] for c in cuts))
        best = key if best is None else min(best, key)
    return best


def test_balanced_ranges_match_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 9)
        k = rng.randint(1, n)
        weights = [rng.choice([0, 1, 5, 50, 400, 401]) for _ in range(n)]
        cut_bytes = [rng.randint(0, 9) for _ in range(n)]
        ranges = balanced_ranges(weights, k, cut_bytes)
        assert len(ranges) == k and ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a < b for a, b in ranges) and all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))
        got = (max(sum(weights[a:b]) for a, b in ranges), sum(cut_bytes[b - 1] for _, b in ranges[:-1]))
        assert got == _brute_force(weights, k, cut_bytes)


def test_balanced_ranges_refuse_more_pieces_than_layers():
    with pytest.raises(ModelError):
        balanced_ranges([1, 2], 3)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_split_points_balance_memory_and_cover_every_parameter(k):
    model = create_model("wrn-10-2", num_classes=10, in_channels=1).eval()
    plan = plan_split(model, SHAPE, k)
    weights = [c.params for c in plan.layers]
    assert sum(p.params for p in plan.pieces) == _count(model) == plan.model_params
    assert [p.weight_bytes for p in plan.pieces] == [4 * p.params for p in plan.pieces]
    assert max(p.params for p in plan.pieces) == _brute_force(weights, k, [c.out_bytes for c in plan.layers])[0]
    assert plan.split_points == [p.start for p in plan.pieces[1:]]
    assert plan.cut_bytes == [4 * int(np.prod(p.out_shape)) for p in plan.pieces[:-1]]
    assert [c.name for c in plan.layers] == ["stem", "group1.0", "group2.0", "group3.0", "tail"]
    d = plan.to_dict()
    assert d["split_after"] == [plan.layers[s - 1].name for s in plan.split_points]


def test_one_student_nonn_is_split_into_its_backbone_and_tail():
    net = untrained_models("wrn-10-2", "wrn-10-1", 1, SHAPE).nonn
    plan = plan_split(net, SHAPE, 2)
    assert sum(p.params for p in plan.pieces) == _count(net)
    assert plan.layers[-1].out_shape == (1, 10)
    with pytest.raises(ModelError, match="one-student"):
        top_level_layers(untrained_models("wrn-10-2", "wrn-10-1", 2, SHAPE).nonn)
    with pytest.raises(ModelError, match="WRN and MobileNetV2"):
        top_level_layers(torch.nn.Linear(2, 2))


def test_compressed_arch_is_the_largest_not_above_the_nonn_total():
    shape = {"in_shape": (3, 32, 32), "num_classes": 10, "num_filters": 256, "map_size": (8, 8)}
    arch, choice = choose_compressed_arch("wrn", 365_728, **shape)
    params = {r["arch"]: r["params"] for r in choice["candidates"]}
    assert params[arch] <= 365_728
    assert all(p > 365_728 or p <= params[arch] for p in params.values())
    arch, choice = choose_compressed_arch("wrn", 10, **shape)
    assert choice["chosen_params"] == min(params.values()) and "smallest" in choice["rule"]


def test_compressed_arch_has_a_layer_for_every_node_of_its_split():
    """At large K the parameter-matched architecture can be too shallow to split K ways; the choice then
    keeps to architectures with at least K layers."""
    from nonn.bench.deployments import choose_compressed_arch

    shapes = {"in_shape": (1, 8, 8), "num_classes": 10, "num_filters": 8, "map_size": (2, 2)}
    _, free = choose_compressed_arch("wrn", 10**9, **shapes)
    arch, choice = choose_compressed_arch("wrn", 10**9, min_layers=12, **shapes)
    chosen = next(r for r in choice["candidates"] if r["arch"] == arch)
    assert chosen["layers"] >= 12 and all(r["layers"] >= 12 for r in choice["candidates"])
    assert "at least 12 layers" in choice["rule"]
    assert any(r["layers"] < 12 for r in free["candidates"])  # the limit did exclude some
