"""gRPC client channels: their options are built here and nowhere else; plaintext or TLS,
blocking or asyncio."""

from __future__ import annotations

import grpc

from nonn.edge.options import DEFAULT_MAX_MESSAGE_BYTES


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *, to_node: bool = False,
                    http_proxy: bool = True) -> list[tuple[str, int]]:
    """Message limits; `to_node` (the gateway's links) also reconnects quickly after a node
    restarts and notices silently dead links with keepalive; `http_proxy=False` ignores the
    proxy environment variables (loopback benchmarks)."""
    options = [
        ("grpc.max_send_message_length", int(max_message_bytes)),
        ("grpc.max_receive_message_length", int(max_message_bytes)),
    ]
    if to_node:
        options += [
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.keepalive_time_ms", 10000),
            ("grpc.keepalive_timeout_ms", 5000),
        ]
    if not http_proxy:
        options.append(("grpc.enable_http_proxy", 0))
    return options


def open_channel(address: str, credentials: grpc.ChannelCredentials | None, options=()) -> grpc.Channel:
    """A blocking channel: secure when credentials are given, else plaintext."""
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=list(options))


def open_aio_channel(address: str, credentials: grpc.ChannelCredentials | None, options=()) -> grpc.aio.Channel:
    """An asyncio channel (open it on the loop that uses it): secure when credentials are given."""
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, credentials, options=list(options))
