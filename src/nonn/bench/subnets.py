"""Addresses for emulated links: the networks the root namespace already uses, and a private subnet clear of them.

Pure functions on the text of ``ip -o -4 addr show`` and ``ip -4 route show table all``; ``bench/links.py`` runs
those commands and raises a ``ValueError`` from here as its own ``LinkEmulationError``.
"""

from __future__ import annotations

import ipaddress

POOL_START = ipaddress.IPv4Address("169.254.64.0")
POOL_SLOTS = 128           # /24s 169.254.64.0 ... 169.254.191.0
METADATA = ipaddress.IPv4Address("169.254.169.254")  # never take the cloud metadata /24

Used = tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network]]


def used_networks(addr_text: str, route_text: str) -> Used:
    """IPv4 networks of the root namespace's addresses, and of its routes."""
    addrs: list[ipaddress.IPv4Network] = []
    for line in addr_text.splitlines():
        words = line.split()
        if "inet" in words and words.index("inet") + 1 < len(words):
            try:
                addrs.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
            except ValueError:
                pass
    routes: list[ipaddress.IPv4Network] = []
    for line in route_text.splitlines():
        for word in line.split()[:2]:   # "NET dev ..." or "TYPE NET dev ..."
            try:
                routes.append(ipaddress.IPv4Network(word, strict=False))
                break
            except ValueError:
                continue
    return addrs, routes


def conflicts(net: ipaddress.IPv4Network, used: Used) -> list[str]:
    """What already uses ``net`` here: any overlapping address, or any route at least as
    specific as ``net`` inside it (a wider route, e.g. a zeroconf 169.254.0.0/16, is
    harmless because our /30 routes are more specific)."""
    addrs, routes = used
    clash = [f"address network {a}" for a in addrs if a.overlaps(net)]
    clash += [f"route {r}" for r in routes if r.overlaps(net) and r.prefixlen >= net.prefixlen]
    if METADATA in net:
        clash.append(f"cloud metadata address {METADATA}")
    return clash


def pick_subnet(used: Used, start_slot: int) -> ipaddress.IPv4Network:
    """The first free /24 of the pool from ``start_slot`` on (wrapping round)."""
    for step in range(POOL_SLOTS):
        slot = (start_slot + step) % POOL_SLOTS
        candidate = ipaddress.IPv4Network((int(POOL_START) + slot * 256, 24))
        if not conflicts(candidate, used):
            return candidate
    raise ValueError("no free /24 left in 169.254.64.0-169.254.191.255; pass subnet= explicitly")


def check_subnet(text: str, n_nodes: int, used: Used) -> ipaddress.IPv4Network:
    """The network ``text`` if it can hold ``n_nodes`` /30 links and nothing here uses it, else ValueError."""
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"subnet {text!r} is not a valid IPv4 network ({exc})") from exc
    if not isinstance(net, ipaddress.IPv4Network) or not (net.is_private or net.is_link_local):
        raise ValueError(f"subnet {net} must be a private or link-local IPv4 network, e.g. 169.254.77.0/24")
    if net.num_addresses < 4 * n_nodes:
        raise ValueError(f"subnet {net} is too small: {n_nodes} /30 links need {4 * n_nodes} addresses")
    clash = conflicts(net, used)
    if clash:
        raise ValueError(f"subnet {net} overlaps {', '.join(clash)} already in use here; pick an unused one")
    return net
