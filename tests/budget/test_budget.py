import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nonn.budget import (
    _BYTES_SHOWN,
    _COUNT_SHOWN,
    Budget,
    BudgetError,
    _at_least,
    balanced_sizes,
    candidates,
    choose_k,
    choose_student,
    format_plan,
    parse_bytes,
    parse_count,
    plan_students,
    student_cost,
)
from nonn.distill.nonn_model import StudentNode
from nonn.errors import ConfigError, ModelError
from nonn.models import create_model

CIFAR = {"in_shape": (3, 32, 32), "num_classes": 10, "map_size": (8, 8)}
TEACHER_FILTERS = 256


def counted(arch, num_filters, in_shape=(3, 32, 32), map_size=(8, 8)):
    """Params and MACs of one device, counted here without the search: the whole StudentNode minus the unused fc."""
    backbone = create_model(arch, num_classes=10, in_channels=in_shape[0])
    node = StudentNode(backbone, num_filters, map_size).eval()
    assert node.bridge[0].out_channels == num_filters
    params = sum(p.numel() for p in node.parameters()) - sum(p.numel() for p in backbone.fc.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = node(torch.zeros(1, *in_shape))
    assert out.shape == (1, num_filters)
    return params, counter.get_total_flops() // 2


def teacher_bytes():
    with torch.device("meta"):
        return 4 * sum(p.numel() for p in create_model("wrn-40-4", num_classes=10, in_channels=3).parameters())


def assert_fits(arch, cost, budget, **shape):
    params, macs = counted(arch, cost.filters, **shape)
    assert (params, macs) == (cost.params, cost.macs)
    if budget.memory_bytes is not None:
        assert params * budget.dtype_bytes <= budget.memory_bytes
    if budget.macs is not None:
        assert macs <= budget.macs


@pytest.mark.parametrize("text,expected", [
    ("200KB", 200_000), ("200kb", 200_000), ("1.5MB", 1_500_000), ("2 GB", 2 * 10**9), ("512KiB", 524_288),
    ("2MiB", 2 * 2**20), ("1gib", 2**30), ("100B", 100), ("100", 100), (" 64 kib ", 65_536), ("0.5KiB", 512),
    ("1.0001KB", 1000), (4096, 4096)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "KB", "12XB", "-1KB", "1.2.3MB", "1e3", "5 MACs", "2 K B", "1,000KB", None])
def test_parse_bytes_errors_name_the_forms(text):
    with pytest.raises(ConfigError, match="KiB") as e:
        parse_bytes(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,expected", [("30M", 30_000_000), ("30m", 30_000_000), ("1.5G", 1_500_000_000),
                                           ("500K", 500_000), ("2.5k", 2500), ("1000", 1000), (" 7 M", 7_000_000)])
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("text", ["30MB", "M", "-3", "3 million", "30MACs", ""])
def test_parse_count_errors_name_the_forms(text):
    with pytest.raises(ConfigError, match="K, M, G"):
        parse_count(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**12))
def test_suggested_amounts_round_up_by_under_one_percent(n):
    for units, parse in ((_BYTES_SHOWN, parse_bytes), (_COUNT_SHOWN, parse_count)):
        value = parse(_at_least(n, units))
        assert n <= value <= math.ceil(n * 1.01)


def test_budget_needs_a_positive_limit():
    with pytest.raises(ConfigError, match="--device-memory"):
        Budget()
    for bad in ({"memory_bytes": 0}, {"macs": -5}, {"memory_bytes": 1000, "dtype_bytes": 0}, {"memory_bytes": True}):
        with pytest.raises(ConfigError):
            Budget(**bad)
    assert Budget.parse("200KB", "30M") == Budget(200_000, 30_000_000)
    assert str(Budget(312_400, 1_234_567)) == "312.4 KB / 1.2M MACs"
    assert issubclass(BudgetError, ConfigError)


@pytest.mark.parametrize("arch,filters,in_shape,map_size", [
    ("wrn-16-1", 37, (3, 32, 32), (8, 8)),
    ("wrn-10-2", 1, (1, 8, 8), (2, 2)),
    ("mbv2-0.35-d2", 64, (1, 28, 28), (7, 7)),
    ("mbv2-0.25-d1", 5, (3, 32, 32), (4, 4)),  # student map pooled down to a smaller teacher map
])
def test_student_cost_counts_backbone_and_bridge_but_not_the_fc(arch, filters, in_shape, map_size):
    cost = student_cost(arch, in_shape=in_shape, num_classes=10, num_filters=filters, map_size=map_size,
                        dtype_bytes=2)
    assert (cost.params, cost.macs) == counted(arch, filters, in_shape, map_size)
    assert cost.weight_bytes == 2 * cost.params and cost.filters == filters
    whole = sum(p.numel() for p in create_model(arch, num_classes=10, in_channels=in_shape[0]).parameters())
    assert cost.params < whole + filters * 1280 + 2 * filters  # the fc is left out


def test_candidates_run_from_most_to_least_capable():
    wrn = candidates("wrn")
    assert wrn[-1] == "wrn-10-0.25" and "wrn-40-4" in wrn and "wrn-16-0.5" in wrn and len(wrn) == len(set(wrn))
    sizes = [student_cost(a, num_filters=1, **CIFAR).params for a in wrn]
    assert sizes == sorted(sizes, reverse=True)
    mbv2 = candidates("mbv2")
    assert mbv2[0] == "mbv2-1.0" and mbv2[-1] == "mbv2-0.25-d1"
    assert candidates(["wrn-10-1", "wrn-16-2"]) == ["wrn-16-2", "wrn-10-1"]
    with pytest.raises(ConfigError, match="wrn, mbv2"):
        candidates("resnet")


def test_a_registered_family_with_sizes_is_searched(monkeypatch):
    from nonn.models import WideResNet, register_model_family, registry

    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))  # registrations end with the test
    register_model_family("thin", lambda depth, **kw: WideResNet(depth, 0.25, **kw), lambda p: {"depth": int(p)},
                          sizes=["thin-10", "thin-22", "thin-16"])
    register_model_family("unsized", lambda depth, **kw: WideResNet(depth, 1, **kw), lambda p: {"depth": int(p)})
    assert candidates("thin") == ["thin-22", "thin-16", "thin-10"]
    arch, _ = choose_student("thin", Budget(memory_bytes=10**9), num_filters=8, **CIFAR)
    assert arch == "thin-22"
    with pytest.raises(ConfigError) as info:
        candidates("unsized")  # registered, but with no sizes to search
    assert str(info.value) == ("no student search for family 'unsized'; use one of: wrn, mbv2, thin "
                               "(or give a list of architecture names)")


@pytest.mark.parametrize("family", ["wrn", "mbv2"])
def test_choose_student_returns_the_largest_that_fits(family):
    budget = Budget(memory_bytes=teacher_bytes() // 20)
    arch, cost = choose_student(family, budget, num_filters=128, **CIFAR)
    assert_fits(arch, cost, budget)
    for other in candidates(family):  # nothing with more parameters fits
        c = student_cost(other, num_filters=128, **CIFAR)
        assert c.params <= cost.params or not budget.fits(c)


class _FlatStem(nn.Module):
    """A student for 1x28x28 images only: its stem is a Linear layer on the flattened image."""

    def __init__(self, num_classes: int, in_channels: int):
        super().__init__()
        self.stem = nn.Linear(in_channels * 28 * 28, 8 * 7 * 7)
        self.num_features = 8
        self.fc = nn.Linear(8, num_classes)

    def forward_features(self, x):
        return torch.relu(self.stem(x.flatten(1))).view(-1, 8, 7, 7)

    def forward(self, x):
        return self.fc(self.forward_features(x).mean(dim=(2, 3)))


def flat_stem(*, num_classes, in_channels):
    return _FlatStem(num_classes, in_channels)


def test_ranking_counts_on_the_real_input_shape_and_classes(monkeypatch):
    """Candidates are ranked on the students' own data, not on CIFAR's 3x32x32 images and 10 classes."""
    import nonn.budget as search

    built, real = set(), search.create_model

    def spy(arch, **kwargs):
        built.add((kwargs["in_channels"], kwargs["num_classes"]))
        return real(arch, **kwargs)

    monkeypatch.setattr(search, "create_model", spy)
    shape = {"in_shape": (1, 28, 28), "num_classes": 26, "map_size": (7, 7)}
    names = [f"{__name__}:flat_stem", "wrn-10-1"]
    arch, cost = choose_student(names, Budget(memory_bytes=parse_bytes("2MB")), num_filters=8, **shape)
    assert arch == names[0]
    assert cost.params == (784 * 392 + 392) + (8 * 8 + 2 * 8)  # stem, bridge conv and BN; the fc never runs
    assert candidates(names, **shape) == names
    assert built == {(1, 26)}


def test_choose_student_under_a_mac_limit_and_both_limits():
    for budget in (Budget(macs=parse_count("30M")), Budget(parse_bytes("400KB"), parse_count("20M"))):
        arch, cost = choose_student("wrn", budget, num_filters=64, **CIFAR)
        assert_fits(arch, cost, budget)


def test_infeasible_budget_names_a_budget_that_works():
    budget = Budget(parse_bytes("2KB"), parse_count("30M"))
    with pytest.raises(BudgetError) as e:
        choose_student("wrn", budget, num_filters=128, **CIFAR)
    message = str(e.value)
    assert "wrn-10-0.25" in message and "128-filter bridge" in message and "\n" not in message
    suggested = re.search(r"--device-memory to at least (\S+)", message).group(1)
    assert "--device-macs" not in message  # 30M MACs was enough
    retry = Budget(parse_bytes(suggested), budget.macs)
    assert retry == e.value.suggested
    arch, cost = choose_student("wrn", retry, num_filters=128, **CIFAR)
    assert arch == "wrn-10-0.25"
    assert_fits(arch, cost, retry)


def test_infeasible_mac_budget_names_the_mac_option():
    with pytest.raises(BudgetError, match="--device-macs to at least") as e:
        choose_student("mbv2", Budget(macs=parse_count("1M")), num_filters=8, **CIFAR)
    arch, cost = choose_student("mbv2", e.value.suggested, num_filters=8, **CIFAR)
    assert_fits(arch, cost, e.value.suggested)


@pytest.mark.parametrize("family,divisor", [("wrn", 1000), ("mbv2", 90)])
def test_choose_k_returns_the_smallest_k_that_fits(family, divisor):
    budget = Budget(memory_bytes=teacher_bytes() // divisor)
    k, plan = choose_k(family, budget, num_filters=TEACHER_FILTERS, **CIFAR)
    assert k > 1 and len(plan) == k
    assert [c.filters for _, c in plan] == balanced_sizes(TEACHER_FILTERS, k)
    assert sum(c.filters for _, c in plan) == TEACHER_FILTERS
    for arch, cost in {(a, c.filters): (a, c) for a, c in plan}.values():
        assert_fits(arch, cost, budget)
    with pytest.raises(BudgetError):  # K - 1 students would each need a wider bridge that no candidate fits
        choose_student(family, budget, num_filters=-(-TEACHER_FILTERS // (k - 1)), **CIFAR)


def test_choose_k_infeasible_everywhere_suggests_a_feasible_budget():
    budget = Budget(memory_bytes=parse_bytes("2KB"))
    with pytest.raises(BudgetError, match=r"K = 4, at most 64 filters.*--device-memory to at least") as e:
        choose_k("wrn", budget, num_filters=TEACHER_FILTERS, k_max=4, **CIFAR)
    k, plan = choose_k("wrn", e.value.suggested, num_filters=TEACHER_FILTERS, k_max=4, **CIFAR)
    assert k == 4 and all(arch == "wrn-10-0.25" for arch, _ in plan)
    with pytest.raises(ConfigError, match="largest K"):
        choose_k("wrn", budget, num_filters=TEACHER_FILTERS, k_max=300, **CIFAR)


def test_heterogeneous_partitions_get_bridges_of_their_own_width():
    budget = Budget(memory_bytes=parse_bytes("400KB"))
    sizes = [150, 70, 20, 16]
    plan = plan_students("wrn", budget, partition_sizes=sizes, **CIFAR)
    assert [c.filters for _, c in plan] == sizes
    for arch, cost in plan:
        assert_fits(arch, cost, budget)
    # the narrowest part's student is at least as large as the widest part's would be with its bridge
    assert student_cost(plan[0][0], num_filters=16, **CIFAR).params <= plan[-1][1].params
    table = format_plan(plan)
    assert "total" in table and plan[0][0] in table and f"{plan[0][1].params:,}" in table
    assert len(table.splitlines()) == len(sizes) + 4


def test_plan_students_argument_errors():
    budget = Budget(memory_bytes=parse_bytes("1MB"))
    with pytest.raises(ConfigError, match="either"):
        plan_students("wrn", budget, partition_sizes=[4, 4], num_filters=8, **CIFAR)
    with pytest.raises(ConfigError, match="needs k"):
        plan_students("wrn", budget, num_filters=8, **CIFAR)
    with pytest.raises(ConfigError, match="make them agree"):
        plan_students("wrn", budget, k=3, partition_sizes=[4, 4], **CIFAR)
    with pytest.raises(ConfigError, match="between 1"):
        plan_students("wrn", budget, k=9, num_filters=8, **CIFAR)
    with pytest.raises(ConfigError, match="at least one teacher filter"):
        plan_students("wrn", budget, partition_sizes=[4, 0], **CIFAR)
    with pytest.raises(ModelError):
        student_cost("resnet-18", num_filters=4, **CIFAR)


def test_balanced_sizes():
    assert balanced_sizes(10, 3) == [4, 3, 3]
    assert balanced_sizes(256, 256) == [1] * 256
