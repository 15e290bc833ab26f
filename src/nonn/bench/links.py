"""Link emulation for the benchmarks: shaped veth links in network namespaces, or the
modelled transfer time where namespaces are not permitted.

Kernel mode (``EmulatedLinks``): each emulated node gets its own network namespace joined
to the root namespace by a veth pair with a /30 from a private or link-local subnet that
exists only on these veths (default: a free /24 inside 169.254.64.0-169.254.191.255). Both
directions are rate-limited with the ``tbf`` qdisc. The benchmark box has no ``netem``
qdisc, so *propagation delay is not added by the kernel*: the runtime adds each link's
``delay_ms`` per message itself (the gRPC runtime takes a per-message ``delay_ms``).
A namespace has no route except its /30, so a process inside can reach only its
gateway address, and the benchmarks only ever send to the addresses made here.

Fallback mode: nothing is shaped; ``transfer_time_s`` gives the analytic transfer time that
the benchmark adds in process. The benchmark output names the mode in use (``SHAPING_NETNS``
or ``SHAPING_TOKEN_BUCKET``), see ``choose_shaping_mode``.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from nonn.bench import subnets
from nonn.bench.profiles import LinkProfile
from nonn.deploy.procfs import pid_alive
from nonn.errors import NonnError

log = logging.getLogger(__name__)

SHAPING_NETNS = "netns-tbf"
SHAPING_TOKEN_BUCKET = "in-process-token-bucket"

DEFAULT_PREFIX = "nonn"
MIN_BURST_BYTES = 1600      # one 1514-byte frame and headroom; tbf drops frames larger than burst
BURST_SECONDS = 0.0005      # above ~26 Mbit/s: 0.5 ms of traffic, so the timer keeps up with the rate
DEFAULT_LATENCY_MS = 200.0  # tbf queue bound: how long a packet may wait for tokens
_CMD_TIMEOUT_S = 20
_IFNAMSIZ = 15
_NODE_IFACE = "vnode"


class LinkEmulationError(NonnError):
    """Shaped links could not be set up here (permissions, missing tools, bad subnet)."""


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True,
                              timeout=_CMD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinkEmulationError(f"`{' '.join(argv)}` could not run: {exc}") from exc
    if check and done.returncode != 0:
        raise LinkEmulationError(f"`{' '.join(argv)}` failed: "
                                 f"{(done.stderr or done.stdout).strip()}")
    return done


def _tools() -> tuple[str, str]:
    ip, tc = _tool("ip"), _tool("tc")
    if ip is None or tc is None:
        raise LinkEmulationError("the `ip` and `tc` commands are missing; install iproute2 "
                                 "(apt-get install -y iproute2)")
    return ip, tc


def tbf_args(rate_bps: float, burst_bytes: int, latency_ms: float) -> list[str]:
    """The tc arguments of one tbf qdisc: ``tbf rate R burst B latency L``."""
    return ["tbf", "rate", f"{round(rate_bps)}bit", "burst", str(int(burst_bytes)),
            "latency", f"{latency_ms:g}ms"]


def default_burst_bytes(rate_bps: float) -> int:
    """Bucket depth used when none is given: one frame, or 0.5 ms of traffic at fast rates. A
    deeper bucket lets a whole message through at line speed: 5 ms (the old default) passed a
    12 kB image over emulated 20 Mbit/s Wi-Fi at once and anything under 4 kB over BLE for free."""
    return max(MIN_BURST_BYTES, int(rate_bps / 8 * BURST_SECONDS))


_probe_cache: dict[str, tuple[bool, str]] = {}


def netns_available(refresh: bool = False) -> tuple[bool, str]:
    """Whether shaped namespaces work here, found by trying: a throwaway namespace with a
    veth pair and a tbf qdisc inside it is created and deleted. Never raises."""
    if not refresh and "result" in _probe_cache:
        return _probe_cache["result"]
    result = _probe()
    _probe_cache["result"] = result
    return result


def _probe() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"network namespaces need Linux (this is {sys.platform})"
    try:
        ip, tc = _tools()
    except LinkEmulationError as exc:
        return False, str(exc)
    name = f"{DEFAULT_PREFIX}probe{os.getpid()}"
    try:
        created = _run([ip, "netns", "add", name], check=False)
        if created.returncode != 0:
            return False, (f"cannot create a network namespace ({created.stderr.strip()}); "
                           f"needs root or CAP_SYS_ADMIN and CAP_NET_ADMIN")
        inside = [ip, "netns", "exec", name]
        veth = _run([*inside, ip, "link", "add", "name", "pa", "type", "veth", "peer",
                     "name", "pb"], check=False)
        if veth.returncode != 0:
            return False, f"cannot create a veth pair ({veth.stderr.strip()})"
        qdisc = _run([*inside, tc, "qdisc", "add", "dev", "pa", "root",
                      *tbf_args(1_000_000, MIN_BURST_BYTES, 50)], check=False)
        if qdisc.returncode != 0:
            return False, f"the tbf qdisc is unavailable ({qdisc.stderr.strip()})"
        return True, ("network namespaces, veth pairs and the tbf qdisc work here "
                      "(netem is not needed: delay is added by the runtime)")
    except LinkEmulationError as exc:
        return False, str(exc)
    finally:
        try:
            _run([ip, "netns", "del", name], check=False)
        except LinkEmulationError:
            pass


def choose_shaping_mode(prefer_netns: bool = True) -> tuple[str, str]:
    """The shaping mode the benchmarks will use and why."""
    if not prefer_netns:
        return SHAPING_TOKEN_BUCKET, "kernel shaping not requested"
    ok, reason = netns_available()
    if ok:
        return SHAPING_NETNS, reason
    return SHAPING_TOKEN_BUCKET, f"namespaces not usable: {reason}"


def _list_namespaces(ip: str) -> list[str]:
    done = _run([ip, "netns", "list"], check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _list_links(ip: str) -> list[str]:
    done = _run([ip, "-o", "link", "show"], check=False)
    names = []
    for line in done.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def cleanup_stale(prefix: str = DEFAULT_PREFIX, include_live: bool = False) -> list[str]:
    """Delete namespaces and veths left by earlier runs with this prefix whose process is
    gone (or all of them with ``include_live``). Returns what was deleted; never raises."""
    try:
        ip, _ = _tools()
    except LinkEmulationError:
        return []
    ns_pattern = re.compile(rf"^{re.escape(prefix)}(\d+)n\d+$")
    link_pattern = re.compile(rf"^{re.escape(prefix)}(\d+)h\d+$")
    removed: list[str] = []
    candidates = [(name, ns_pattern.match(name), "netns") for name in _list_namespaces(ip)]
    candidates += [(name, link_pattern.match(name), "link") for name in _list_links(ip)]
    for name, match, kind in candidates:
        if not match or not (include_live or not pid_alive(int(match.group(1)))):
            continue
        if _run([ip, kind, "del", name], check=False).returncode == 0:
            removed.append(name)
    return removed


def _used_networks(ip: str) -> subnets.Used:
    return subnets.used_networks(_run([ip, "-o", "-4", "addr", "show"], check=False).stdout,
                                 _run([ip, "-4", "route", "show", "table", "all"], check=False).stdout)


@dataclass
class EmulatedNode:
    """One emulated device: its namespace, address, and the shaped link to the root."""

    index: int
    namespace: str
    address: str           # the node's address inside its namespace
    host_address: str      # the root-namespace end of its veth (the gateway side)
    host_iface: str
    node_iface: str
    rate_bps: float
    burst_bytes: int
    latency_ms: float
    delay_ms: float        # to be added per message by the runtime (no netem here)
    link: LinkProfile | None = field(default=None, repr=False)
    _ip: str = field(default="ip", repr=False)

    def exec_prefix(self) -> list[str]:
        """argv prefix that runs a command inside this node's namespace."""
        return [self._ip, "netns", "exec", self.namespace]

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this node's namespace."""
        return [*self.exec_prefix(), *argv]


class EmulatedLinks:
    """Context manager creating ``n_nodes`` shaped namespaces; everything is deleted on
    exit, on errors during setup, and at interpreter exit as a last resort.

    ``link`` (one LinkProfile, or one per node) gives rate and delay; ``rate_bps``
    overrides the rate for every node. ``subnet`` must be a private or link-local IPv4
    network not in use in the root namespace; each node takes one /30 of it.
    """

    def __init__(self, n_nodes: int, link: LinkProfile | Sequence[LinkProfile] | None = None,
                 *, rate_bps: float | None = None, burst_bytes: int | None = None,
                 latency_ms: float = DEFAULT_LATENCY_MS, subnet: str | None = None,
                 prefix: str = DEFAULT_PREFIX) -> None:
        if n_nodes < 1:
            raise ValueError("n_nodes must be at least 1")
        if not re.fullmatch(r"[a-z]{1,5}", prefix):
            raise ValueError("prefix must be 1 to 5 lowercase letters (interface names "
                             "are limited to 15 characters)")
        links = list(link) if isinstance(link, Sequence) else [link] * n_nodes
        if len(links) != n_nodes:
            raise ValueError(f"got {len(links)} link profiles for {n_nodes} nodes")
        self.n_nodes = n_nodes
        self._links: list[LinkProfile | None] = links
        self._rates: list[float] = []
        for item in links:
            rate = rate_bps if rate_bps is not None else (item.rate_bps if item else None)
            if rate is None or rate <= 0:
                raise ValueError("give rate_bps or a LinkProfile with a positive rate_bps")
            self._rates.append(float(rate))
        self._burst = burst_bytes
        self.latency_ms = latency_ms
        self._subnet_arg = subnet
        self.prefix = prefix
        self.tag = f"{prefix}{os.getpid()}"
        if len(f"{self.tag}h{n_nodes - 1}") > _IFNAMSIZ:
            raise ValueError(f"too many nodes ({n_nodes}) for interface names with prefix "
                             f"'{prefix}'")
        self.subnet: ipaddress.IPv4Network | None = None
        self.nodes: list[EmulatedNode] = []
        self.cleanup_errors: list[str] = []
        self._created_ns: list[str] = []
        self._created_links: list[str] = []
        self._closed = True

    # -- setup -------------------------------------------------------------------------
    def __enter__(self) -> EmulatedLinks:  # noqa: PYI034
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> bool:
        self.close()
        return False

    def open(self) -> None:
        ok, reason = netns_available()
        if not ok:
            raise LinkEmulationError(f"cannot emulate links with namespaces: {reason}")
        self._ip, self._tc = _tools()
        self._closed = False
        atexit.register(self.close)
        try:
            self.subnet = self._resolve_subnet()
            for index in range(self.n_nodes):
                self.nodes.append(self._add_node(index))
        except BaseException:
            self.close()
            raise

    def _resolve_subnet(self) -> ipaddress.IPv4Network:
        try:
            used = _used_networks(self._ip)
            if self._subnet_arg is None:
                return subnets.pick_subnet(used, os.getpid() % subnets.POOL_SLOTS)
            return subnets.check_subnet(self._subnet_arg, self.n_nodes, used)
        except ValueError as exc:
            raise LinkEmulationError(str(exc)) from exc

    def _add_node(self, index: int) -> EmulatedNode:
        assert self.subnet is not None
        ip, tc = self._ip, self._tc
        namespace, host_iface = f"{self.tag}n{index}", f"{self.tag}h{index}"
        base = int(self.subnet.network_address) + 4 * index
        host_addr, node_addr = ipaddress.ip_address(base + 1), ipaddress.ip_address(base + 2)
        rate = self._rates[index]
        burst = self._burst if self._burst is not None else default_burst_bytes(rate)
        link = self._links[index]

        _run([ip, "netns", "add", namespace])
        self._created_ns.append(namespace)
        _run([ip, "link", "add", "name", host_iface, "type", "veth", "peer", "name",
              _NODE_IFACE, "netns", namespace])
        self._created_links.append(host_iface)
        inside = [ip, "netns", "exec", namespace]
        # No IPv6 link-local addresses: nothing but the IPv4 /30 lives on these veths.
        _run([ip, "link", "set", "dev", host_iface, "addrgenmode", "none"], check=False)
        _run([*inside, ip, "link", "set", "dev", _NODE_IFACE, "addrgenmode", "none"],
             check=False)
        _run([ip, "addr", "add", f"{host_addr}/30", "dev", host_iface])
        _run([*inside, ip, "addr", "add", f"{node_addr}/30", "dev", _NODE_IFACE])
        _run([*inside, ip, "link", "set", "dev", "lo", "up"])
        _run([*inside, ip, "link", "set", "dev", _NODE_IFACE, "up"])
        _run([ip, "link", "set", "dev", host_iface, "up"])
        shape = tbf_args(rate, burst, self.latency_ms)
        _run([tc, "qdisc", "add", "dev", host_iface, "root", *shape])             # root -> node
        _run([*inside, tc, "qdisc", "add", "dev", _NODE_IFACE, "root", *shape])   # node -> root
        return EmulatedNode(index=index, namespace=namespace, address=str(node_addr),
                            host_address=str(host_addr), host_iface=host_iface,
                            node_iface=_NODE_IFACE, rate_bps=rate, burst_bytes=burst,
                            latency_ms=self.latency_ms,
                            delay_ms=link.delay_ms if link else 0.0, link=link, _ip=ip)

    # -- inspection ----------------------------------------------------------------------
    def _tc_argv(self, index: int, side: str, *args: str) -> list[str]:
        node = self.nodes[index]
        if side == "host":
            return [self._tc, *args, "dev", node.host_iface]
        if side == "node":
            return node.wrap([self._tc, *args, "dev", node.node_iface])
        raise ValueError("side must be 'host' (root -> node) or 'node' (node -> root)")

    def qdisc_show(self, index: int, side: str = "node") -> str:
        """``tc -s qdisc show`` of one end of node ``index``'s link."""
        return _run(self._tc_argv(index, side, "-s", "qdisc", "show")).stdout

    def shaped_rate_bps(self, index: int, side: str = "node") -> float | None:
        """The tbf rate configured on one end of node ``index``'s link, read back from tc
        (tc keeps bytes per second, so the value is a multiple of 8)."""
        done = _run(self._tc_argv(index, side, "-j", "qdisc", "show"), check=False)
        if done.returncode == 0 and done.stdout.strip().startswith("["):
            for qdisc in json.loads(done.stdout):
                if qdisc.get("kind") == "tbf":
                    return float(qdisc["options"]["rate"]) * 8
            return None
        match = re.search(r"qdisc tbf .*?rate (\S+)", self.qdisc_show(index, side))
        return parse_tc_rate(match.group(1)) if match else None

    # -- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        """Delete every namespace and veth made here; never raises."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        # Deleting the root end destroys both ends at once (namespace teardown would do it
        # too, but asynchronously, and not at all while a process still runs inside).
        for iface in self._created_links:
            self._quiet(["link", "del", iface], gone="Cannot find device")
        for namespace in reversed(self._created_ns):
            self._quiet(["netns", "del", namespace])
        self._created_ns.clear()
        self._created_links.clear()

    def _quiet(self, args: list[str], gone: str | None = None) -> None:
        try:
            done = _run([self._ip, *args], check=False)
            problem = done.stderr.strip() if done.returncode != 0 else ""
            if gone and gone in problem:
                problem = ""
        except LinkEmulationError as exc:
            problem = str(exc)
        if problem:
            self.cleanup_errors.append(f"ip {' '.join(args)}: {problem}")
            log.warning("link emulation cleanup: ip %s: %s", " ".join(args), problem)


_TC_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
             "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}


def parse_tc_rate(text: str) -> float:
    """Bits per second from a tc rate such as ``20Mbit``, ``800Kbit`` or ``125000bps``."""
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text.strip())
    if not match:
        raise ValueError(f"not a tc rate: {text!r}")
    unit = match.group(2).lower() or "bit"
    if unit not in _TC_UNITS:
        raise ValueError(f"unknown tc rate unit in {text!r}")
    return float(match.group(1)) * _TC_UNITS[unit]


def transfer_time_s(nbytes: int, link: LinkProfile) -> float:
    """Modelled time to move one message of ``nbytes`` over ``link``:
    ``delay_ms / 1000 + (nbytes + overhead_bytes) * 8 / rate_bps``."""
    if nbytes < 0:
        raise ValueError("nbytes must be >= 0")
    return link.delay_ms / 1000 + (nbytes + link.overhead_bytes) * 8 / link.rate_bps
