"""A LAN on one machine for deployment tests: a bridge in the root namespace and one network
namespace per device, each with its own address on one /24 (veth pairs into the bridge)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from contextlib import suppress

from nonn.bench import subnets


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Lan:
    """`with Lan(["pi-0", "pi-1", "hub", "laptop"]) as lan:` lan.address[name], lan.prefix(name)."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.tag = f"nl{os.getpid() % 100000}"
        self.bridge = f"{self.tag}br"
        self.namespaces = {name: f"{self.tag}d{i}" for i, name in enumerate(self.names)}
        self.address: dict[str, str] = {}
        self._links: list[str] = []

    def __enter__(self) -> Lan:
        try:
            used = subnets.used_networks(_ip("-o", "-4", "addr", "show").stdout,
                                         _ip("-4", "route", "show", "table", "all").stdout)
            net = subnets.pick_subnet(used, (os.getpid() + 61) % subnets.POOL_SLOTS)
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names):
                ns, host_end = self.namespaces[name], f"{self.tag}v{i}"
                address = ipaddress.ip_address(int(net.network_address) + 10 + i)
                _ip("netns", "add", ns)
                _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
                self._links.append(host_end)
                _ip("link", "set", host_end, "master", self.bridge)
                _ip("link", "set", host_end, "up")
                _ip("netns", "exec", ns, "ip", "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
                _ip("netns", "exec", ns, "ip", "link", "set", "eth0", "up")
                _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
                self.address[name] = str(address)
        except BaseException:
            self.close()
            raise
        return self

    def prefix(self, name: str) -> list[str]:
        """argv prefix that runs a command on that device (in its namespace)."""
        return ["ip", "netns", "exec", self.namespaces[name]]

    def close(self) -> None:
        for link in self._links:
            _ip("link", "del", link, check=False)
        with suppress(Exception):
            _ip("link", "del", self.bridge, check=False)
        for ns in self.namespaces.values():
            _ip("netns", "del", ns, check=False)

    def __exit__(self, *exc) -> None:
        self.close()
