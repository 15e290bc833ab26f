"""The listable model registry: families with enumerated sizes, single models, names and their errors."""

import pytest
import torch
from torch import nn

from nonn.errors import ModelError, NonnError
from nonn.models import (
    MobileNetV2,
    WideResNet,
    create_model,
    list_families,
    list_models,
    register_model,
    register_model_family,
    validate_name,
)
from nonn.models import registry

UNKNOWN = ("unknown architecture 'resnet-18'; use one of: wrn-16-1, wrn-40-4, wrn-16-0.5; mbv2-1.0, mbv2-0.35-d2 "
           "(or package.module:factory)")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test are undone after it."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))


def test_families_enumerate_the_sizes_a_budget_search_ranks():
    assert list_families() == ["wrn", "mbv2"]
    wrn, mbv2 = list_models(family="wrn"), list_models(family="mbv2")
    assert len(wrn) == 35 and len(set(wrn)) == 35 and {"wrn-40-4", "wrn-16-1", "wrn-10-0.25"} <= set(wrn)
    assert len(mbv2) == 15 and mbv2[0] == "mbv2-1.0" and mbv2[-1] == "mbv2-0.25-d1"
    assert list_models() == wrn + mbv2


def test_pattern_is_shell_style():
    assert list_models("wrn-16-*") == ["wrn-16-0.25", "wrn-16-0.5", "wrn-16-0.75", "wrn-16-1", "wrn-16-2",
                                       "wrn-16-4", "wrn-16-8"]
    assert list_models("*-d1", family="mbv2") == [n for n in list_models(family="mbv2") if n.endswith("-d1")]
    assert list_models("resnet*") == []


def test_unknown_family_names_the_families():
    with pytest.raises(ModelError, match="unknown model family 'resnet'; use one of: wrn, mbv2"):
        list_models(family="resnet")


@pytest.mark.parametrize("name", list_models())
def test_every_listed_name_builds_with_a_stride_4_final_map_and_timms_contract(name):
    validate_name(name)
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = create_model(name, num_classes=3, in_channels=1)
        fmap = model.forward_features(torch.zeros(2, 1, 9, 9))
        logits = model(torch.zeros(2, 1, 9, 9))
        model.reset_classifier(0)
        pooled = model(torch.zeros(2, 1, 9, 9))
    assert isinstance(model, WideResNet if name.startswith("wrn-") else MobileNetV2)
    assert fmap.shape == (2, model.num_features, 3, 3) and logits.shape == (2, 3)
    assert pooled.shape == (2, model.num_features)
    assert model.feature_module == "act" and model.in_chans == 1


def test_unknown_names_list_examples_and_bad_parameters_name_the_rule():
    with pytest.raises(ModelError) as info:
        validate_name("resnet-18")
    assert str(info.value) == UNKNOWN
    with pytest.raises(ModelError, match=r"architecture 'wrn-15-1': WRN depth must be 6n\+4"):
        create_model("wrn-15-1", num_classes=10, in_channels=3)
    validate_name("wrn-15-1")  # well formed: only building it checks the depth, as before
    assert issubclass(ModelError, NonnError)


class Tiny(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_a_registered_model_is_listed_and_built(scratch_registry):
    register_model("tiny", Tiny)
    assert list_models()[-1] == "tiny" and list_models("ti*") == ["tiny"]
    validate_name("tiny")
    model = create_model("tiny", num_classes=5, in_channels=2, width=6)
    assert model(torch.randn(1, 2, 8, 8)).shape == (1, 5) and model.conv.out_channels == 6
    with pytest.raises(ModelError, match="'tiny' is already registered; choose another name or pass replace=True"):
        register_model("tiny", Tiny)
    register_model("tiny", lambda **kw: Tiny(width=2, **kw), replace=True)
    assert create_model("tiny", num_classes=5, in_channels=2).conv.out_channels == 2
    with pytest.raises(ModelError) as info:
        validate_name("tinier")
    assert "; tiny (or package.module:factory)" in str(info.value)


@pytest.mark.parametrize("name,factory,match", [
    ("wrn-16-1", Tiny, "already a wrn architecture"),
    ("", Tiny, "non-empty string"),
    ("pkg.mod:thing", Tiny, "without"),
    (" tiny", Tiny, "without spaces"),
    (7, Tiny, "non-empty string"),
    ("tiny", "not callable", "callable factory"),
])
def test_register_model_rejects_bad_arguments(scratch_registry, name, factory, match):
    with pytest.raises(ModelError, match=match):
        register_model(name, factory)


def _parse_tiny(parameters: str) -> dict:
    if not parameters.isdigit():
        raise ValueError(f"expected a width, got '{parameters}'")
    return {"width": int(parameters)}


def test_a_registered_family_is_listed_parsed_and_built(scratch_registry):
    family = register_model_family("tiny", Tiny, _parse_tiny, sizes=["tiny-8", "tiny-2"])
    assert family.example == "tiny-8, tiny-2"
    assert list_families() == ["wrn", "mbv2", "tiny"] and list_models(family="tiny") == ["tiny-8", "tiny-2"]
    assert create_model("tiny-3", num_classes=2, in_channels=1).conv.out_channels == 3  # any size, listed or not
    with pytest.raises(ModelError, match="unknown architecture 'tiny-x'.*tiny-8, tiny-2"):
        create_model("tiny-x", num_classes=2, in_channels=1)
    with pytest.raises(ModelError, match="already a tiny architecture"):
        register_model("tiny-4", Tiny)
    with pytest.raises(ModelError, match="pass replace=True"):
        register_model_family("tiny", Tiny, _parse_tiny)
    register_model_family("tiny", Tiny, _parse_tiny, replace=True)
    assert list_models(family="tiny") == []


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "my-net"}, "cannot contain '-'"),
    ({"sizes": ["tiny-x"]}, "lists 'tiny-x', which its parse does not accept"),
    ({"sizes": ["other-4"]}, "lists 'other-4'"),
    ({"parse": None}, "callable build and parse"),
])
def test_register_model_family_rejects_bad_arguments(scratch_registry, kwargs, match):
    args = {"name": "tiny", "build": Tiny, "parse": _parse_tiny, **kwargs}
    with pytest.raises(ModelError, match=match):
        register_model_family(args.pop("name"), args.pop("build"), args.pop("parse"), **args)
    assert "tiny" not in list_families()
