"""Choosing the emulated links' subnet from what `ip` reports, without touching the network."""

from __future__ import annotations

import ipaddress

import pytest

from nonn.bench.subnets import POOL_SLOTS, check_subnet, conflicts, pick_subnet, used_networks

ADDR = """1: lo    inet 127.0.0.1/8 scope host lo
2: eth0    inet 10.0.3.7/24 brd 10.0.3.255 scope global eth0
3: nonnh0    inet 169.254.64.1/30 scope global nonnh0"""
ROUTE = """default via 10.0.3.1 dev eth0
169.254.0.0/16 dev eth0 scope link
local 10.0.3.7 dev eth0 table local proto kernel scope host src 10.0.3.7"""


def test_used_networks_read_addresses_and_routes():
    addrs, routes = used_networks(ADDR, ROUTE)
    assert [str(a) for a in addrs] == ["127.0.0.0/8", "10.0.3.0/24", "169.254.64.0/30"]
    assert "169.254.0.0/16" in [str(r) for r in routes] and "10.0.3.7/32" in [str(r) for r in routes]


def test_conflicts_ignore_wider_routes_but_not_addresses_or_metadata():
    used = used_networks(ADDR, ROUTE)
    assert conflicts(ipaddress.IPv4Network("169.254.65.0/24"), used) == []  # only the zeroconf /16 covers it
    assert conflicts(ipaddress.IPv4Network("169.254.64.0/24"), used) == ["address network 169.254.64.0/30"]
    assert "cloud metadata" in conflicts(ipaddress.IPv4Network("169.254.169.0/24"), used)[0]


def test_pick_skips_used_slots_and_wraps_round():
    used = used_networks(ADDR, ROUTE)
    assert str(pick_subnet(used, 0)) == "169.254.65.0/24"
    assert str(pick_subnet(used, POOL_SLOTS - 1)) == "169.254.191.0/24"
    everything = ([ipaddress.IPv4Network("169.254.0.0/16")], [])
    with pytest.raises(ValueError, match="no free /24"):
        pick_subnet(everything, 0)


@pytest.mark.parametrize("text, words", [("nonsense", "not a valid"), ("8.8.8.0/24", "private or link-local"),
                                         ("10.9.0.0/30", "too small"), ("10.0.3.0/25", "overlaps")])
def test_check_subnet_refuses_what_cannot_work(text, words):
    with pytest.raises(ValueError, match=words):
        check_subnet(text, 2, used_networks(ADDR, ROUTE))


def test_check_subnet_accepts_a_free_private_network():
    assert str(check_subnet("10.9.0.0/29", 2, used_networks(ADDR, ROUTE))) == "10.9.0.0/29"
