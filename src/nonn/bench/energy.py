"""Per-node energy model: compute energy plus radio energy for the bits a node moves."""

from __future__ import annotations

import math

from nonn.bench.profiles import DeviceProfile, LinkProfile


def node_energy_j(device: DeviceProfile, compute_s: float, bits_sent: float,
                  bits_received: float, link: LinkProfile) -> dict[str, float]:
    """Energy one node spends on one inference, in joules, with its breakdown.

    ``E = P_active * t_compute + e_tx * bits_sent + e_rx * bits_received``, where
    ``P_active`` is ``device.active_power_w``, ``e_tx`` is ``link.energy_per_bit_j`` and
    ``e_rx`` is ``link.rx_energy_per_bit_j`` (equal to ``e_tx`` unless the profile gives a
    receive figure). Idle power while waiting on the network is not counted. Returns
    ``{"compute_j", "tx_j", "rx_j", "comm_j", "total_j"}``.
    """
    for label, value in (("compute_s", compute_s), ("bits_sent", bits_sent),
                         ("bits_received", bits_received)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
    compute_j = device.active_power_w * compute_s
    tx_j = link.energy_per_bit_j * bits_sent
    rx_j = link.rx_energy_per_bit_j * bits_received
    return {"compute_j": compute_j, "tx_j": tx_j, "rx_j": rx_j, "comm_j": tx_j + rx_j,
            "total_j": compute_j + tx_j + rx_j}
