"""In-process shaping: token bucket arithmetic on an injected clock (no timing
thresholds), and the analytic transfer time."""

from __future__ import annotations

import threading

import pytest

from nonn.bench.links import (
    SHAPING_NETNS,
    SHAPING_TOKEN_BUCKET,
    TokenBucket,
    choose_shaping_mode,
    default_burst_bytes,
    parse_tc_rate,
    tbf_args,
    transfer_time_s,
)
from nonn.bench.profiles import LinkProfile, get_link


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_passes_free_then_debt_is_paid_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate_bps=8000, burst_bytes=1000, clock=clock)   # 1000 B/s
    assert bucket.delay_for(600) == 0.0
    assert bucket.delay_for(400) == 0.0          # bucket exactly empty
    assert bucket.delay_for(500) == pytest.approx(0.5)   # 500 B of debt at 1000 B/s
    assert bucket.delay_for(250) == pytest.approx(0.75)  # queues behind earlier debt
    clock.now += 0.75                             # debt repaid
    assert bucket.available_bytes() == pytest.approx(0.0)
    clock.now += 10                               # refill caps at the burst
    assert bucket.available_bytes() == pytest.approx(1000)


def test_message_larger_than_burst_waits_for_the_excess():
    clock = FakeClock()
    bucket = TokenBucket(rate_bps=1_000_000, burst_bytes=10_000, clock=clock)
    assert bucket.delay_for(135_000) == pytest.approx(125_000 * 8 / 1_000_000)


def test_clock_going_backwards_does_not_mint_tokens():
    clock = FakeClock()
    bucket = TokenBucket(rate_bps=8000, burst_bytes=100, clock=clock)
    bucket.delay_for(100)
    clock.now -= 5
    assert bucket.available_bytes() == pytest.approx(0.0)


def test_concurrent_reservations_are_all_accounted():
    clock = FakeClock()
    bucket = TokenBucket(rate_bps=8000, burst_bytes=1000, clock=clock)
    threads = [threading.Thread(target=bucket.delay_for, args=(10,)) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bucket.available_bytes() == pytest.approx(1000 - 2000)
    assert bucket.delay_for(0) == pytest.approx(1.0)


def test_bucket_rejects_bad_arguments():
    with pytest.raises(ValueError):
        TokenBucket(0, 10)
    with pytest.raises(ValueError):
        TokenBucket(10, 10).delay_for(-1)


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
