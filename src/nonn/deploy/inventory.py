"""The inventory of a real deployment (`nonn bundle --inventory hosts.yaml`): which device is
which, validated against the run's manifest before anything is written.

    cluster: lab            # optional: the name in the certificates' identities
    devices:
      - {name: pi-0, address: 192.168.1.20, role: node 0, cpu: "1", user: nonn}
      - {name: pi-1, address: 192.168.1.21, role: node 1}
      - {name: hub,  address: 192.168.1.10, role: gateway, port: 50050, metrics_port: 9100}

A device: name (letters, digits, '.', '_', '-'), address (an IP or a DNS name the others reach
it by), role ("node K" for student K, or "gateway"), and optionally port, cpu (cores, like 1 or
0-1), user (the service's non-root account, default nonn) and metrics_port."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError

NODE_PORT, GATEWAY_PORT = 50051, 50050
DEFAULT_USER = "nonn"
_KEYS = {"name", "address", "role", "port", "cpu", "user", "metrics_port"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_CPUS = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


@dataclass(frozen=True)
class Device:
    name: str
    address: str
    role: str            # "node" or "gateway"
    index: int | None    # the student, for a node
    port: int
    cpu: str | None = None
    user: str = DEFAULT_USER
    metrics_port: int | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def title(self) -> str:
        return f"node {self.index}" if self.role == "node" else "gateway"


@dataclass(frozen=True)
class Inventory:
    path: Path
    cluster: str
    devices: tuple[Device, ...]

    @property
    def gateway(self) -> Device:
        return next(d for d in self.devices if d.role == "gateway")

    @property
    def nodes(self) -> list[Device]:
        """The nodes in partition order."""
        return sorted((d for d in self.devices if d.role == "node"), key=lambda d: d.index)


def _fail(path: Path, what: str) -> DeployError:
    return DeployError(f"inventory {path}: {what}")


def _port(value, path: Path, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _fail(path, f"{where} has {key} {value!r}; give a port number from 1 to 65535")
    return value


def _device(raw, i: int, path: Path) -> Device:
    where = f"device {i + 1}"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where} is not a mapping; write it as {{name: ..., address: ..., role: ...}}")
    unknown = sorted(set(map(str, raw)) - _KEYS)
    if unknown:
        raise _fail(path, f"{where} has unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_KEYS))}")
    for key in ("name", "address", "role"):
        if key not in raw:
            raise _fail(path, f"{where} has no {key}; every device needs name, address and role")
    name = str(raw["name"])
    if not _NAME.fullmatch(name):
        raise _fail(path, f"{where} has name {name!r}; use letters, digits, '.', '_' or '-'")
    where = f"device {name!r}"
    address = str(raw["address"])
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        if not _HOST.fullmatch(address):
            raise _fail(path, f"{where} has address {address!r}, neither an IP address nor a host name") from None
    role_text = str(raw["role"]).strip()
    match = re.fullmatch(r"node\s*[ _-]?\s*(\d+)", role_text)
    if match:
        role, index = "node", int(match.group(1))
    elif role_text == "gateway":
        role, index = "gateway", None
    else:
        raise _fail(path, f"{where} has unknown role {role_text!r}; use 'node K' (K = 0, 1, ...) or 'gateway'")
    port = _port(raw.get("port", NODE_PORT if role == "node" else GATEWAY_PORT), path, where, "port")
    cpu = None if raw.get("cpu") is None else str(raw["cpu"]).replace(" ", "")
    if cpu is not None and not _CPUS.fullmatch(cpu):
        raise _fail(path, f"{where} has cpu {raw['cpu']!r}; give cores like 1, 0-1 or 0,2")
    user = str(raw.get("user", DEFAULT_USER))
    if not _USER.fullmatch(user) or user == "root":
        raise _fail(path, f"{where} has user {user!r}; give a non-root account name (lowercase, like nonn)")
    metrics = raw.get("metrics_port")
    metrics = None if metrics is None else _port(metrics, path, where, "metrics_port")
    if metrics == port:
        raise _fail(path, f"{where} uses port {port} for both gRPC and metrics; give metrics_port another port")
    return Device(name, address, role, index, port, cpu, user, metrics)


def load_inventory(path: str | Path, students: int) -> Inventory:
    """Read and check an inventory against a deployment of `students` nodes; DeployError (one
    line naming the fix) for anything wrong."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DeployError(f"cannot read inventory {path}: {exc.strerror}; pass --inventory hosts.yaml") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise _fail(path, f"is not valid YAML{at}; fix the syntax") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("devices"), list) or not raw["devices"]:
        raise _fail(path, "has no list of devices; write `devices:` followed by one entry per device")
    unknown = sorted(set(map(str, raw)) - {"cluster", "devices"})
    if unknown:
        raise _fail(path, f"has unknown top-level key {unknown[0]!r}; the keys are cluster and devices")
    cluster = str(raw.get("cluster") or "default")
    if not _NAME.fullmatch(cluster):
        raise _fail(path, f"has cluster {cluster!r}; use letters, digits, '.', '_' or '-'")
    devices = tuple(_device(d, i, path) for i, d in enumerate(raw["devices"]))
    for key, what in (("name", "name"), ("address", "address")):
        seen: dict[str, str] = {}
        for d in devices:
            value = getattr(d, key).lower()
            if value in seen:
                raise _fail(path, f"devices {seen[value]!r} and {d.name!r} have the same {what} {getattr(d, key)}; "
                                  f"every device needs its own {what}")
            seen[value] = d.name
    gateways = [d.name for d in devices if d.role == "gateway"]
    if len(gateways) != 1:
        raise _fail(path, f"lists {len(gateways)} gateways ({', '.join(gateways) or 'none'}); give exactly one")
    nodes = [d for d in devices if d.role == "node"]
    if len(nodes) != students:
        raise _fail(path, f"lists {len(nodes)} nodes but the manifest has {students} students; "
                          f"give one device per student, roles node 0 to node {students - 1}")
    indices = sorted(d.index for d in nodes)
    if indices != list(range(students)):
        taken = next((k for k in range(students) if k not in indices), None)
        twice = next((k for k in indices if indices.count(k) > 1), None)
        issue = f"node {twice} appears twice" if twice is not None else f"node {taken} is missing"
        raise _fail(path, f"{issue}; give roles node 0 to node {students - 1}, each once")
    return Inventory(path, cluster, devices)
