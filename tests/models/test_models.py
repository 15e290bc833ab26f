import pytest
import torch

from nonn.errors import ModelError
from nonn.models import FeatureHook, create_model, list_models, probe_feature_shape, validate_name

REGISTRY_CASES = [
    # name, in_channels, H, W, expected final channels
    ("wrn-10-1", 1, 8, 8, 64),
    ("wrn-16-1", 3, 32, 32, 64),
    ("wrn-16-2", 1, 28, 28, 128),
    ("wrn-16-4", 3, 16, 16, 256),
    ("wrn-40-4", 3, 32, 32, 256),
    ("wrn-16-0.5", 3, 32, 32, 32),  # widths below 1 thin the groups: 8, 16, 32 channels
    ("wrn-10-0.25", 1, 8, 8, 16),
]


@pytest.mark.parametrize("name,c,h,w,feat", REGISTRY_CASES)
def test_wrn_shapes(name, c, h, w, feat):
    model = create_model(name, num_classes=7, in_channels=c).eval()
    x = torch.randn(2, c, h, w)
    assert model(x).shape == (2, 7)
    fmap = model.forward_features(x)
    assert fmap.shape == (2, feat, (h + 3) // 4, (w + 3) // 4)
    assert probe_feature_shape(model, "act", (c, h, w)) == tuple(fmap.shape[1:])
    assert model.num_features == feat


def test_the_worked_examples_are_listed_sizes():
    assert {name for name, *_ in REGISTRY_CASES} <= set(list_models(family="wrn"))


@pytest.mark.parametrize("name", list_models(family="wrn"))
def test_every_listed_wrn_ends_in_64_times_its_width_channels(name):
    _, depth, width = name.split("-")
    with torch.device("meta"):
        model = create_model(name, num_classes=10, in_channels=3)
    assert (model.depth, model.num_features) == (int(depth), round(64 * float(width)))
    assert model.stem.out_channels == 16


def test_wrn_parameter_counts_match_the_paper_scale():
    # WRN-40-4 has about 8.9M parameters and WRN-16-1 about 0.17M (Zagoruyko & Komodakis, CIFAR-10).
    big = sum(p.numel() for p in create_model("wrn-40-4", num_classes=10, in_channels=3).parameters())
    small = sum(p.numel() for p in create_model("wrn-16-1", num_classes=10, in_channels=3).parameters())
    assert 8.8e6 < big < 9.0e6
    assert 0.16e6 < small < 0.18e6


def test_feature_hook_reads_final_map_without_editing_the_model():
    model = create_model("wrn-10-1", num_classes=3, in_channels=1).eval()
    x = torch.randn(4, 1, 8, 8)
    with FeatureHook(model, "act") as hook:
        logits = model(x)
        assert torch.equal(hook.output, model.forward_features(x))
    assert logits.shape == (4, 3)
    assert not model.act._forward_hooks  # removed on exit


def test_unknown_module_path_names_candidates():
    model = create_model("wrn-10-1", num_classes=3, in_channels=1)
    with pytest.raises(ModelError, match="teacher.feature_module"):
        FeatureHook(model, "group9")


def test_fractional_widths_keep_the_stem_and_thin_the_groups():
    model = create_model("wrn-16-0.5", num_classes=10, in_channels=3)
    assert model.stem.out_channels == 16
    assert [g[-1].conv2.out_channels for g in (model.group1, model.group2, model.group3)] == [8, 16, 32]
    assert create_model("wrn-16-1.0", num_classes=10, in_channels=3).num_features == 64


@pytest.mark.parametrize("bad", ["wrn-15-1", "resnet-18", "wrn-16", "wrn-16-0", "wrn-16-.5"])
def test_bad_architecture_names(bad):
    with pytest.raises(ModelError):
        create_model(bad, num_classes=10, in_channels=3)


def test_user_factory_by_import_path():
    model = create_model("nonn.models.wrn:WideResNet", num_classes=5, in_channels=2)
    assert model(torch.randn(1, 2, 8, 8)).shape == (1, 5)
    with pytest.raises(ModelError, match="cannot import"):
        create_model("nonn.models.nope:Thing", num_classes=5, in_channels=2)
    validate_name("wrn-16-1")
