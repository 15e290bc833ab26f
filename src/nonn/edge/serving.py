"""What node and gateway servers share: options, health, reflection, a signal-aware loop."""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nonn.edge import tls as tls_
from nonn.edge.errors import EdgeError

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
GRACE_S = 2.0


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message limits, exclusive ports, and tolerance for the gateway's keepalive pings."""
    return [
        ("grpc.max_receive_message_length", int(max_message_bytes)),
        ("grpc.max_send_message_length", int(max_message_bytes)),
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]


def start_server(
    register,
    service_names: list[str],
    listen: str,
    tls,
    insecure: bool,
    *,
    max_message_bytes: int,
    workers: int,
) -> tuple[grpc.Server, int, str, health.HealthServicer]:
    """Build, bind and start a server; `register(server)` adds the servicers.

    Returns (server, bound port, security mode, health servicer).
    """
    if max_message_bytes < 1024:
        raise EdgeError(f"max message size must be at least 1024 bytes, got {max_message_bytes}")
    credentials, mode = tls_.server_credentials(tls, insecure)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nonn-rpc"),
        options=server_options(max_message_bytes),
        maximum_concurrent_rpcs=16 * workers,
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *service_names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = tls_.add_port(server, listen, credentials)
    server.start()
    return server, port, mode, health_servicer


def bound_address(listen: str, port: int) -> str:
    """`listen` with its port replaced by the bound one."""
    host = listen.rsplit(":", 1)[0] if ":" in listen else listen
    return f"{host}:{port}"


def serve_until_signal(server: grpc.Server, health_servicer: health.HealthServicer, banner: str,
                       grace_s: float = GRACE_S) -> int:
    """Print `banner`, block until SIGTERM or SIGINT, then stop with a grace period."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(banner, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        health_servicer.enter_graceful_shutdown()
        server.stop(grace_s).wait(grace_s + 1.0)
        print("nonn: stopped", file=sys.stderr, flush=True)
    return 0
