"""Where the case study's processes run: one node process per model piece (in its own shaped network namespace, or
on loopback), pinned to a core when there are enough, plus the NoNN gateway; and how the links are shaped."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .deployments import Prepared
from .links import DEFAULT_PREFIX, SHAPING_NETNS, EmulatedLinks, choose_shaping_mode, transfer_time_s
from .profiles import LinkProfile

SHAPING_IN_PROCESS = "in-process-transfer-time"
SHAPING_CHOICES = ("auto", "netns", "in-process")
SHAPING_DESCRIPTIONS = {
    SHAPING_NETNS: "each node process in its own network namespace behind a veth pair shaped with tbf to the "
                   "link's rate in both directions; propagation delay added per message by the node runtime",
    SHAPING_IN_PROCESS: "nodes on loopback; per message the node runtime adds the link's delay and the hub adds "
                        "the modelled serialization time (bytes + overhead) x 8 / rate",
}
# tbf bucket depth: one full Ethernet frame. EmulatedLinks' default (5 ms of traffic, at least 4 KB) would let a
# whole 12 KB CIFAR image through an emulated 20 Mbit/s Wi-Fi link at once, and 4 KB through BLE for free.
TBF_BURST_BYTES = 1600
_PROXY_VARS = {"http_proxy", "https_proxy", "grpc_proxy", "all_proxy"}


def resolve_shaping(shaping: str) -> tuple[str, str]:
    """(mode, why) for --shaping auto|netns|in-process."""
    if shaping not in SHAPING_CHOICES:
        raise ConfigError(f"--shaping must be one of {', '.join(SHAPING_CHOICES)}, got {shaping!r}")
    if shaping == "in-process":
        return SHAPING_IN_PROCESS, "asked for with --shaping in-process"
    mode, why = choose_shaping_mode(prefer_netns=True)
    if mode != SHAPING_NETNS:
        if shaping == "netns":
            raise ConfigError(f"--shaping netns is not possible here ({why}); use --shaping auto or in-process")
        return SHAPING_IN_PROCESS, why
    return mode, why


def queue_ms(prep: Prepared, link: LinkProfile) -> float:
    """tbf queue bound: room for the largest message a few times over, so TCP sees a slow link, not drops."""
    biggest = max(max(n.get("in_bytes", 0), n.get("out_bytes", 0)) for d in prep.deployments for n in d.nodes)
    biggest = max(biggest, int(np.prod(prep.input_shape)) * 4)
    return max(200.0, 4 * biggest * 8 / link.rate_bps * 1000.0)


def modelled_s(prep: Prepared, link: LinkProfile) -> float:
    """A generous estimate of the slowest inference, for deadlines: every message over the link in turn."""
    total = 0.0
    image = int(np.prod(prep.input_shape)) * 4
    for d in prep.deployments:
        total = max(total, sum(transfer_time_s(n.get("in_bytes", image), link)
                               + transfer_time_s(n.get("out_bytes", 4096), link) for n in d.nodes))
    return total


def _node_env() -> dict[str, str]:
    """The children's environment without proxies: their gRPC connects straight to the links."""
    from ..deploy.processes import child_env

    return {k: v for k, v in child_env().items() if k.lower() not in _PROXY_VARS}


@dataclass
class Served:
    """The processes of one link's run: node children by (deployment, index), their cores, the gateway."""

    procs: object          # deploy.processes.ChildProcesses
    children: dict         # (deployment, index) -> child; a deployment that shares another's processes maps there
    cores: dict
    gateways: dict         # gateway deployment name -> its gateway child
    pinned: bool


def serve(stack: contextlib.ExitStack, prep: Prepared, link: LinkProfile, sink: Path, *, in_process: bool,
          timeout_s: float, link_prefix: str = DEFAULT_PREFIX, log=print) -> Served:
    """Start a node per deployment piece and one probe node serving ``sink`` (all closed with ``stack``), each
    behind its own shaped link unless ``in_process``, then one gateway per NoNN deployment on loopback (the hub).
    A deployment that shares another's models (another first hop) gets no processes of its own."""
    from nonn.edge.options import GatewayOptions, NodeOptions

    from ..deploy.processes import ChildProcesses, gateway_args, node_args

    cpus = os.cpu_count() or 1
    own = [d for d in prep.deployments if d.shares is None]
    pin = cpus >= max(len(d.files) for d in own)
    taskset = shutil.which("taskset")
    slots = [(d.name, i, d.files[i]) for d in own for i in range(len(d.files))]
    slots.append(("probe", 0, sink))
    if in_process:
        hosts, prefixes = ["127.0.0.1"] * len(slots), [[] for _ in slots]
    else:
        links = stack.enter_context(EmulatedLinks(len(slots), link, burst_bytes=TBF_BURST_BYTES,
                                                  latency_ms=queue_ms(prep, link), prefix=link_prefix))
        hosts = [n.address for n in links.nodes]
        prefixes = [n.exec_prefix() for n in links.nodes]
    procs = stack.enter_context(ChildProcesses(prep.work / "logs" / link.name, startup_timeout_s=120.0))
    env = _node_env()
    # One intra-op thread each; the node runtime adds the link's delay to each request and reply.
    node_options = NodeOptions(insecure=True, intra_op_threads=1, delay_ms=float(link.delay_ms))
    children, cores = {}, {}
    for j, (name, i, model) in enumerate(slots):
        core = i % cpus if pin else None
        prefix = list(prefixes[j])
        if core is not None and taskset:
            prefix += [taskset, "-c", str(core)]
        # Pinned by the prefix (taskset) or below, not by the node's --cpu: the whole process, from its start.
        child = procs.spawn(f"{name} node {i}", node_args(model, f"{hosts[j]}:0", node_options), prefix=prefix,
                            env=env)
        if core is not None and not taskset:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(child.pid, {core})
        children[(name, i)], cores[(name, i)] = child, core
    procs.await_ready(list(children.values()))
    for d in prep.deployments:
        if d.shares is not None:
            for i in range(len(d.files)):
                children[(d.name, i)], cores[(d.name, i)] = children[(d.shares, i)], cores[(d.shares, i)]
    gateway_options = GatewayOptions(insecure=True, intra_op_threads=1,
                                     deadline_s=round(timeout_s * 1000) / 1000)  # whole milliseconds
    gateways = {d.name: procs.spawn(f"{d.name} gateway", gateway_args(
        d.manifest, [children[(d.name, i)].address for i in range(len(d.files))], "127.0.0.1:0",
        gateway_options), env=env) for d in prep.deployments if d.kind == "gateway"}
    procs.await_ready(list(gateways.values()))
    log(f"[bench] {link.name}: {len(slots)} node processes + {len(gateways)} gateways up ("
        f"{'namespaces + tbf' if not in_process else 'loopback, transfer time added'}"
        f"{', pinned' if pin else ''})")
    return Served(procs, children, cores, gateways, pin)
