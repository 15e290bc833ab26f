"""Shaping without namespaces: the analytic transfer time, tbf arguments and the mode chosen."""

from __future__ import annotations

import pytest

from nonn.bench.links import (
    SHAPING_NETNS,
    SHAPING_TOKEN_BUCKET,
    choose_shaping_mode,
    default_burst_bytes,
    parse_tc_rate,
    tbf_args,
    transfer_time_s,
)
from nonn.bench.profiles import LinkProfile, get_link


def test_transfer_time_by_hand():
    link = LinkProfile(name="x", rate_bps=1e6, delay_ms=5.0, overhead_bytes=25,
                       energy_per_bit_j=0, source="test")
    # 5 ms + (1000 + 25) B * 8 / 1 Mbit/s = 0.005 + 0.0082
    assert transfer_time_s(1000, link) == pytest.approx(0.0132)
    assert transfer_time_s(0, link) == pytest.approx(0.0052)
    wifi = get_link("wifi")
    assert transfer_time_s(2048, wifi) == pytest.approx(
        wifi.delay_ms / 1e3 + (2048 + wifi.overhead_bytes) * 8 / wifi.rate_bps)
    with pytest.raises(ValueError):
        transfer_time_s(-1, link)


def test_tc_helpers():
    assert tbf_args(20e6, 12500, 200) == ["tbf", "rate", "20000000bit", "burst", "12500",
                                          "latency", "200ms"]
    assert default_burst_bytes(100_000) == 1600  # BLE: one frame
    assert default_burst_bytes(20e6) == 1600  # Wi-Fi: a 12 kB image cannot pass at line speed
    assert default_burst_bytes(1e9) == 62500  # 0.5 ms at 1 Gbit/s
    assert parse_tc_rate("20Mbit") == 20e6
    assert parse_tc_rate("800Kbit") == 800e3
    assert parse_tc_rate("125000bps") == 1e6
    with pytest.raises(ValueError):
        parse_tc_rate("fast")


def test_shaping_mode_is_named_with_a_reason():
    mode, reason = choose_shaping_mode()
    assert mode in (SHAPING_NETNS, SHAPING_TOKEN_BUCKET) and reason.strip()
    assert choose_shaping_mode(prefer_netns=False)[0] == SHAPING_TOKEN_BUCKET


def test_probe_says_why_when_tools_are_missing(monkeypatch):
    from nonn.bench import links

    monkeypatch.setattr(links, "_probe_cache", {})          # restored after the test
    monkeypatch.setattr(links, "_tool", lambda name: None)
    ok, reason = links.netns_available(refresh=True)
    assert not ok and "apt-get install -y iproute2" in reason
    assert links.choose_shaping_mode() == (SHAPING_TOKEN_BUCKET,
                                           f"namespaces not usable: {reason}")


def test_emulated_links_refuse_cleanly_where_namespaces_are_not_permitted(monkeypatch):
    from nonn.bench import links
    from nonn.errors import NonnError

    monkeypatch.setattr(links, "netns_available", lambda refresh=False: (False, "no CAP"))
    net = links.EmulatedLinks(1, rate_bps=1e6)
    with pytest.raises(NonnError, match="no CAP"), net:
        pass
    assert net.nodes == []
