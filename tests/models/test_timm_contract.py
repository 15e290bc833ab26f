"""timm's model contract: num_features, in_chans, forward_features, forward_head, reset_classifier(0)."""

import pytest
import torch
from torch import nn

from nonn.distill.nonn_model import StudentNode
from nonn.models import create_model

# Every listed architecture keeps the contract on the meta device: test_model_registry.py.
SMALL = ["wrn-10-1", "wrn-10-0.5", "mbv2-0.25-d1"]


@pytest.mark.parametrize("name", SMALL)
def test_forward_is_head_of_features(name):
    model = create_model(name, num_classes=4, in_channels=2).eval()
    x = torch.randn(3, 2, 12, 12)
    fmap = model.forward_features(x)
    assert (model.in_chans, model.num_classes, fmap.shape[1]) == (2, 4, model.num_features)
    pooled = model.forward_head(fmap, pre_logits=True)
    assert torch.allclose(pooled, fmap.mean(dim=(2, 3)), atol=1e-6)
    assert torch.equal(model(x), model.forward_head(fmap)) and model(x).shape == (3, 4)
    assert model.get_classifier() is model.fc


@pytest.mark.parametrize("name", SMALL)
def test_reset_classifier_zero_makes_forward_return_pooled_features(name):
    model = create_model(name, num_classes=4, in_channels=1).eval()
    x = torch.randn(2, 1, 8, 8)
    expected = model.forward_features(x).mean(dim=(2, 3))
    backbone_keys = [k for k in model.state_dict() if not k.startswith("fc.")]
    model.reset_classifier(0)
    out = model(x)
    assert out.shape == (2, model.num_features) and torch.allclose(out, expected, atol=1e-6)
    assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
    assert list(model.state_dict()) == backbone_keys  # the same keys as before, less the classifier's


@pytest.mark.parametrize("name", SMALL)
def test_reset_classifier_to_new_classes(name):
    model = create_model(name, num_classes=4, in_channels=1).double()
    model.reset_classifier(7)
    assert model.num_classes == 7 and model.fc.weight.dtype == torch.float64
    assert model(torch.randn(2, 1, 8, 8, dtype=torch.float64)).shape == (2, 7)


@pytest.mark.parametrize("bad", [dict(num_classes=-1), dict(num_classes=1.5), dict(num_classes=True),
                                 dict(num_classes=0, global_pool="max")])
def test_reset_classifier_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        create_model("wrn-10-1", num_classes=4, in_channels=1).reset_classifier(**bad)


def test_a_student_backbone_loses_its_classifier():
    node = StudentNode(create_model("wrn-10-1", num_classes=10, in_channels=1), 5, (2, 2))
    assert isinstance(node.backbone.fc, nn.Identity) and node.backbone.num_classes == 0
    assert node(torch.randn(2, 1, 8, 8)).shape == (2, 5)
