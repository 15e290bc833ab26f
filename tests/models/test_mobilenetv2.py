import pytest
import torch
from torch import nn

from nonn.errors import ModelError
from nonn.models import WideResNet, create_model, list_models, probe_feature_shape, validate_name
from nonn.models.mobilenetv2 import InvertedResidual, MobileNetV2, scaled_channels

SHAPE_CASES = [
    # name, in_channels, H, W, final channels
    ("mbv2-1.0", 3, 16, 16, 1280),
    ("mbv2-0.5", 1, 28, 28, 640),
    ("mbv2-0.35", 1, 8, 8, 448),
    ("mbv2-0.25-d1", 3, 32, 32, 320),
    ("mbv2-0.35-d2", 3, 32, 32, 448),
    ("mbv2-1", 1, 8, 8, 1280),
]


def test_the_worked_examples_are_listed_sizes():
    # "mbv2-1" is "mbv2-1.0" spelled short: the same network, not a listed size of its own.
    assert {name for name, *_ in SHAPE_CASES} - set(list_models(family="mbv2")) == {"mbv2-1"}


@pytest.mark.parametrize("name,c,h,w,feat", SHAPE_CASES)
def test_mbv2_shapes(name, c, h, w, feat):
    model = create_model(name, num_classes=7, in_channels=c).eval()
    x = torch.randn(2, c, h, w)
    assert model(x).shape == (2, 7)
    fmap = model.forward_features(x)
    assert fmap.shape == (2, feat, (h + 3) // 4, (w + 3) // 4)  # overall stride 4, like WRN
    assert model.feature_module == "act"
    assert probe_feature_shape(model, model.feature_module, (c, h, w)) == tuple(fmap.shape[1:])
    assert model.num_features == feat
    assert fmap.min() >= 0


@pytest.mark.parametrize("value,expected", [(4, 8), (11.2, 16), (12, 16), (32, 32), (56, 56), (72, 72), (112, 112),
                                            (448, 448), (36, 40), (1, 8)])
def test_scaled_channels_round_to_multiples_of_eight(value, expected):
    assert scaled_channels(value) == expected


@pytest.mark.parametrize("name", list_models(family="mbv2"))
def test_every_channel_count_is_a_multiple_of_eight(name):
    with torch.device("meta"):  # the layers' shapes are all that is read
        model = create_model(name, num_classes=10, in_channels=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.out_channels % 8 == 0 and m.out_channels >= 8 for m in convs)


def test_registry_round_trip_and_depth_knob():
    model = create_model("mbv2-0.5", num_classes=10, in_channels=3)
    assert isinstance(model, MobileNetV2) and model.width == 0.5 and model.max_blocks is None
    def blocks(m):
        return sum(isinstance(b, InvertedResidual) for b in m.modules())
    assert blocks(model) == 17
    assert blocks(create_model("mbv2-0.5-d4", num_classes=10, in_channels=3)) == 17
    assert blocks(create_model("mbv2-0.5-d2", num_classes=10, in_channels=3)) == 12
    assert blocks(create_model("mbv2-0.5-d1", num_classes=10, in_channels=3)) == 7
    validate_name("mbv2-0.35-d2")
    wrn = create_model("wrn-16-1", num_classes=10, in_channels=3)
    assert isinstance(wrn, WideResNet) and (wrn.depth, wrn.width) == (16, 1)


def test_full_width_has_the_reference_size():
    # MobileNetV2 1.0 has about 3.5M parameters with a 1000-way classifier; with 10 classes about 2.24M.
    n = sum(p.numel() for p in create_model("mbv2-1.0", num_classes=10, in_channels=3).parameters())
    assert 2.2e6 < n < 2.3e6


def test_trains_one_step():
    model = create_model("mbv2-0.25-d1", num_classes=3, in_channels=1)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("bad", ["mbv2-0", "mbv2-0.0", "mbv2-0.5-d0", "mbv2-0.5-d5", "mbv2-x", "mbv2-.5", "mbv2"])
def test_bad_mbv2_names(bad):
    with pytest.raises(ModelError):
        create_model(bad, num_classes=10, in_channels=3)
