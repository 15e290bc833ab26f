"""Shaped links in network namespaces: a TCP echo server runs inside a node's namespace,
200 KB go through the tbf-shaped veth and come back intact, tc reports the requested rate,
and nothing is left behind. Skips, with netns_available()'s reason, where namespaces are
not permitted. Nothing here asserts on timing."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading

import pytest

from nonn.bench.links import (
    EmulatedLinks,
    LinkEmulationError,
    cleanup_stale,
    netns_available,
)
from nonn.bench.profiles import get_link

OK, REASON = netns_available()
pytestmark = pytest.mark.skipif(not OK, reason=f"network namespaces not usable: {REASON}")

PREFIX = "nonnt"
RATE_BPS = 8_000_000
PAYLOAD = os.urandom(200 * 1024)

ECHO_SERVER = r"""
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], 0))
server.listen(1)
print(server.getsockname()[1], flush=True)
server.settimeout(60)
conn, _ = server.accept()
conn.settimeout(60)
while True:
    data = conn.recv(65536)
    if not data:
        break
    conn.sendall(data)
conn.close()
"""


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ours() -> list[str]:
    return [n for n in _namespaces() if n.startswith(f"{PREFIX}{os.getpid()}")]


def _echo_through(address: str, port: int, payload: bytes) -> bytes:
    received = bytearray()
    with socket.create_connection((address, port), timeout=60) as sock:
        sender = threading.Thread(target=lambda: (sock.sendall(payload),
                                                  sock.shutdown(socket.SHUT_WR)))
        sender.start()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join(timeout=60)
    return bytes(received)


def test_echo_through_a_shaped_link_inside_a_namespace():
    wifi = get_link("wifi")
    with EmulatedLinks(2, wifi, rate_bps=RATE_BPS, prefix=PREFIX) as net:
        assert len(net.nodes) == 2 and len(_ours()) == 2
        node = net.nodes[1]
        assert node.namespace.startswith(f"{PREFIX}{os.getpid()}")
        assert node.exec_prefix()[-2:] == ["exec", node.namespace]
        assert node.delay_ms == wifi.delay_ms     # for the runtime to add per message
        assert len({n.address for n in net.nodes} | {n.host_address for n in net.nodes}) == 4

        server = subprocess.Popen(node.wrap([sys.executable, "-c", ECHO_SERVER, node.address]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            echoed = _echo_through(node.address, port, PAYLOAD)
            assert server.wait(timeout=60) == 0, server.stderr.read()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        assert len(echoed) == len(PAYLOAD)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(PAYLOAD).digest()

        shown = net.qdisc_show(1, side="node")      # tc -s qdisc show, inside the namespace
        assert "tbf" in shown and "rate 8Mbit" in shown
        for side in ("node", "host"):               # the echo really went through both tbfs
            sent = re.search(r"Sent (\d+) bytes", net.qdisc_show(1, side=side))
            assert sent and int(sent.group(1)) > len(PAYLOAD)
        assert net.shaped_rate_bps(1, side="node") == RATE_BPS
        assert net.shaped_rate_bps(1, side="host") == RATE_BPS
        assert net.shaped_rate_bps(0, side="node") == RATE_BPS
    assert _ours() == []
    assert net.cleanup_errors == []


def test_everything_is_removed_after_an_error_in_the_block():
    net = EmulatedLinks(1, rate_bps=1_000_000, prefix=PREFIX)
    with pytest.raises(RuntimeError, match="boom"), net:
        assert len(_ours()) == 1
        raise RuntimeError("boom")
    assert _ours() == []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    assert net.nodes[0].host_iface not in links


def test_bad_subnets_are_refused_before_anything_is_made():
    for subnet in ("8.8.8.0/24", "169.254.169.0/24", "169.254.77.0/30"):
        with pytest.raises(LinkEmulationError), \
                EmulatedLinks(2, rate_bps=1_000_000, prefix=PREFIX, subnet=subnet):
            pass
    assert _ours() == []


def test_cleanup_stale_removes_namespaces_of_dead_processes_only():
    dead = next(pid for pid in range(4_000_000, 3_000_000, -1) if not os.path.exists(f"/proc/{pid}"))
    stale = f"{PREFIX}{dead}n0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with EmulatedLinks(1, rate_bps=1_000_000, prefix=PREFIX):
            removed = cleanup_stale(PREFIX)
            assert stale in removed
            assert len(_ours()) == 1          # our own live namespace is kept
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)
    assert stale not in _namespaces() and _ours() == []
