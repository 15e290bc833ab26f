"""K student nodes and one gateway as separate processes on 127.0.0.1, with mutual TLS or plaintext."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from nonn.edge.errors import EdgeError
from nonn.edge.manifest import load_manifest
from nonn.edge.options import GatewayOptions, NodeOptions, security_args

from .errors import DeployError
from .processes import STARTUP_TIMEOUT_S, Child, ChildProcesses, gateway_args, node_args
from .procfs import cpu_seconds

HOST = "127.0.0.1"


def ensure_certs(directory: Path, nodes: int) -> Path:
    """A CA and certificates for `nodes` nodes, the gateway and a client in `directory`;
    reuses a complete set, remakes an incomplete one."""
    from nonn.edge.certs import has_roles, make_certs

    names = ["gateway", "client", *(f"node_{k}" for k in range(nodes))]
    complete = (directory / "ca.pem").is_file() and all(
        (directory / f"{n}.pem").is_file() and (directory / f"{n}.key").is_file() for n in names)
    if not complete or not has_roles(directory / "gateway.pem"):  # an older set, without roles: remake it
        make_certs(directory, nodes, overwrite=True)
    return directory


def node_cores() -> list[int]:
    """The cores this process may use, in order (empty where affinity is not supported)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


@dataclass
class Security:
    """Where the PEM files are, or None for plaintext."""

    certs: Path | None

    @property
    def mode(self) -> str:
        return "insecure" if self.certs is None else "mtls"

    def server_tls(self, name: str):
        """What server `name` ("node_0", "gateway") serves with: (cert, key, ca) or None for plaintext."""
        if self.certs is None:
            return None
        d = self.certs
        return (d / f"{name}.pem", d / f"{name}.key", d / "ca.pem")

    def server_args(self, name: str) -> list[str]:
        """The --tls-* flags (or --insecure) of server `name`."""
        return security_args(self.server_tls(name), self.certs is None)

    def node_options(self, k: int, options: NodeOptions | None = None) -> NodeOptions:
        """`options` (default: the defaults) secured as node k."""
        return NodeOptions.of(options, tls=self.server_tls(f"node_{k}"), insecure=self.certs is None)

    def gateway_options(self, options: GatewayOptions | None = None) -> GatewayOptions:
        """`options` (default: the defaults) secured as the gateway."""
        return GatewayOptions.of(options, tls=self.server_tls("gateway"), insecure=self.certs is None)

    def client_tls(self):
        """What GatewayClient takes: (cert, key, ca) or None with insecure=True."""
        if self.certs is None:
            return None
        d = self.certs
        return (d / "client.pem", d / "client.key", d / "ca.pem")

    def client(self, address: str):
        from nonn.edge.client import GatewayClient

        return GatewayClient(address, tls=self.client_tls(), insecure=self.certs is None)

    def stream_client(self, address: str):
        from nonn.edge.client import StreamingClient

        return StreamingClient(address, tls=self.client_tls(), insecure=self.certs is None)


class LocalCluster:
    """Nodes then gateway, each its own OS process; close() stops them all (also as a context manager).

    `node_options`/`gateway_options` set the servers (their TLS comes from `security`);
    `deadline_ms`, when given, replaces the gateway's deadline."""

    def __init__(self, manifest: Path, security: Security, logdir: Path, *, deadline_ms: float | None = None,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S, pin_nodes: bool = True, log=print,
                 node_options: NodeOptions | None = None, gateway_options: GatewayOptions | None = None):
        self.manifest = Path(manifest)
        self.security = security
        gateway_options = GatewayOptions.of(gateway_options)
        if deadline_ms is not None:
            gateway_options = GatewayOptions.of(gateway_options, deadline_s=float(deadline_ms) / 1000.0)
        self.gateway_options = gateway_options
        self.node_options = NodeOptions.of(node_options)
        self.deadline_ms = gateway_options.deadline_s * 1000.0
        self.pin_nodes = pin_nodes  # node k on core k (mod the cores): one core each, like one board each
        self.log = log
        self.processes = ChildProcesses(logdir, startup_timeout_s=startup_timeout_s)
        self.nodes: list[Child] = []
        self.gateway: Child | None = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def student_files(self) -> list[Path]:
        try:
            return [student.file for student in load_manifest(self.manifest, verify=False).students]
        except EdgeError as exc:
            raise DeployError(str(exc)) from None  # the message names the fix

    def start(self) -> None:
        if not self.deadline_ms > 0:
            raise DeployError(f"--deadline-ms must be positive, got {self.deadline_ms:g}")
        models = self.student_files()
        self.nodes = [self.processes.spawn(f"node {k}", node_args(model, f"{HOST}:0",
                                                                   self.security.node_options(k, self.node_options),
                                                                   cpu=self.node_cpu(k)))
                      for k, model in enumerate(models)]
        self.processes.await_ready(self.nodes)
        for k, (node, model) in enumerate(zip(self.nodes, models)):
            self.log(f"[deploy] node {k} pid {node.pid} serving {model.name} on {node.address} ({self.security.mode})")
        self.gateway = self.processes.start(
            "gateway", gateway_args(self.manifest, [n.address for n in self.nodes], f"{HOST}:0",
                                    self.security.gateway_options(self.gateway_options)))
        self.log(f"[deploy] gateway pid {self.gateway.pid} serving on {self.gateway.address} ({self.security.mode})")

    def node_cpu(self, k: int) -> int | None:
        """The core node k is pinned to (None: not pinned)."""
        cores = node_cores()
        if not self.pin_nodes or not cores:
            return None
        return cores[k % len(cores)]


    @property
    def address(self) -> str:
        if self.gateway is None:
            raise RuntimeError("the cluster is not started")
        return self.gateway.address

    def client(self):
        return self.security.client(self.address)

    def stream_client(self):
        """A StreamingClient to the gateway; make it inside the event loop that will use it."""
        return self.security.stream_client(self.address)

    def describe(self) -> list[dict]:
        """role, index, pid and address of every process (the client, this process, is not listed)."""
        rows = [{"role": "node", "index": k, "pid": n.pid, "address": n.address,
                 "cpu": None if self.node_cpu(k) is None else str(self.node_cpu(k))}
                for k, n in enumerate(self.nodes)]
        if self.gateway is not None:
            rows.append({"role": "gateway", "index": None, "pid": self.gateway.pid, "address": self.gateway.address})
        return rows

    def peak_rss(self) -> dict[str, int | None]:
        """VmHWM by process name ("node 0", ..., "gateway"); call before close()."""
        self.processes.check_alive()
        return self.processes.peak_rss()

    def cpu_seconds(self) -> dict[str, float | None]:
        """CPU time used so far by every process by name, and by this one as "client"."""
        return {**{c.name: cpu_seconds(c.pid) for c in self.processes.children}, "client": cpu_seconds()}

    def close(self) -> None:
        self.processes.close()
