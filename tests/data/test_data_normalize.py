"""normalize and the per-channel statistics it is given."""

from __future__ import annotations

import pytest
import torch

from nonn.data import channel_stats, normalize


def test_normalize_per_channel():
    x = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # 1×2×1×2
    out = normalize(x, (0.5, 0.2), (0.5, 0.1))
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, 0], torch.tensor([[-1.0, 1.0]]))
    assert torch.allclose(out[0, 1], torch.tensor([[0.0, 2.0]]), atol=1e-6)


def test_channel_stats_match_direct_computation():
    x = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8)
    mean, std = channel_stats(x)
    f = x.double() / 255
    assert mean == pytest.approx(f.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(f.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)


def test_normalized_train_data_is_standardised():
    x = torch.randint(0, 256, (50, 2, 6, 6), dtype=torch.uint8)
    z = normalize(x, *channel_stats(x))
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-5)


def test_empty_split_has_neutral_stats():
    assert channel_stats(torch.zeros((0, 2, 3, 3), dtype=torch.uint8)) == ((0.0, 0.0), (1.0, 1.0))


def test_constant_channel_gets_unit_std():
    _, std = channel_stats(torch.full((3, 1, 2, 2), 7, dtype=torch.uint8))
    assert std == (1.0,)
