"""The per-node energy model, checked against the formula by hand."""

from __future__ import annotations

import pytest

from nonn.bench.energy import node_energy_j
from nonn.bench.profiles import DeviceProfile, LinkProfile

DEVICE = DeviceProfile(name="d", active_power_w=4.0, idle_power_w=1.0, ram_bytes=1,
                       source="test")
LINK = LinkProfile(name="l", rate_bps=1e6, delay_ms=1.0, energy_per_bit_j=2e-7,
                   source="test")


def test_formula_by_hand():
    # 4 W * 0.5 s = 2 J; 2e-7 J/bit * (1000 + 3000) bits = 8e-4 J
    out = node_energy_j(DEVICE, compute_s=0.5, bits_sent=1000, bits_received=3000, link=LINK)
    assert out["compute_j"] == pytest.approx(2.0)
    assert out["tx_j"] == pytest.approx(2e-4)
    assert out["rx_j"] == pytest.approx(6e-4)
    assert out["comm_j"] == pytest.approx(8e-4)
    assert out["total_j"] == pytest.approx(2.0008)


def test_separate_receive_energy_is_used():
    link = LinkProfile(name="w", rate_bps=1e6, delay_ms=0, energy_per_bit_j=3e-7,
                       energy_per_bit_rx_j=1e-7, source="test")
    out = node_energy_j(DEVICE, 0.0, bits_sent=10, bits_received=10, link=link)
    assert out["tx_j"] == pytest.approx(3e-6) and out["rx_j"] == pytest.approx(1e-6)
    assert out["total_j"] == pytest.approx(4e-6)


@pytest.mark.parametrize("kwargs", [{"compute_s": -1.0}, {"bits_sent": float("nan")},
                                    {"bits_received": -5}])
def test_negative_or_nan_inputs_are_rejected(kwargs):
    args = {"compute_s": 1.0, "bits_sent": 0, "bits_received": 0, **kwargs}
    with pytest.raises(ValueError):
        node_energy_j(DEVICE, link=LINK, **args)
