"""Cost accounting against hand-computed counts of small modules."""

import pytest
import torch
from torch import nn

from nonn.models.cost import FLOAT32_BYTES, count_macs, count_params, tensor_bytes, weight_bytes


def test_linear_params_and_macs():
    fc = nn.Linear(5, 3)  # 5*3 weights + 3 biases; 5*3 MACs per input row
    assert count_params(fc) == 18
    assert count_macs(fc, torch.zeros(1, 5)) == 15
    assert count_macs(fc, torch.zeros(4, 5)) == 60  # the batch counts
    assert count_macs(fc, (5,)) == 15  # a shape means one input


def test_conv_params_and_macs():
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)  # 4 filters of 2x3x3; each of 4x6x6 outputs takes 18 MACs
    assert count_params(conv) == 72
    assert count_macs(conv, (2, 6, 6)) == 4 * 6 * 6 * 18
    net = nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert count_params(net) == 72 + 8 + 10  # BN's weight and bias, the Linear's 4*2 + 2
    assert count_macs(net, (2, 6, 6)) == 4 * 6 * 6 * 18 + 8  # BN, ReLU and pooling are not MACs


def test_macs_run_in_eval_mode_without_gradients():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    assert count_macs(net, (3,)) == 9 and not net.training


def test_shared_parameters_count_once():
    fc = nn.Linear(4, 4)
    tied = nn.Sequential(fc, nn.ReLU(), fc)
    assert count_params(tied) == 20
    assert count_params([fc.weight, fc.bias, fc.weight]) == 20
    assert count_macs(tied, (4,)) == 32  # but it runs twice


def test_counts_on_the_meta_device():
    with torch.device("meta"):
        conv = nn.Conv2d(3, 8, 1)
        assert count_params(conv) == 32
        assert count_macs(conv, (3, 4, 4)) == 8 * 16 * 3


@pytest.mark.parametrize("dtype_bytes", [1, 2, FLOAT32_BYTES])
def test_bytes(dtype_bytes):
    assert FLOAT32_BYTES == 4
    assert weight_bytes(nn.Linear(5, 3), dtype_bytes) == 18 * dtype_bytes
    assert weight_bytes(1000, dtype_bytes) == 1000 * dtype_bytes
    assert tensor_bytes((1, 16, 8, 8), dtype_bytes) == 1024 * dtype_bytes
    assert tensor_bytes((64,)) == 256
