"""What node and gateway servers share: options, health, reflection, a signal-aware loop.

A node runs a thread-pool server (grpc.server). The gateway runs a grpc.aio server on the
process's serving loop, one event loop thread (event_loop()) that also drives its node
channels, so the Python work of a request never hands over between threads."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nonn.edge import tls as tls_
from nonn.edge.addresses import check_address, is_loopback, split_address
from nonn.edge.errors import EdgeError
from nonn.edge.options import DEFAULT_MAX_MESSAGE_BYTES  # noqa: F401 (bench imports it from here)
GRACE_S = 2.0


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message limits, exclusive ports, and tolerance for the gateway's keepalive pings."""
    return [
        ("grpc.max_receive_message_length", int(max_message_bytes)),
        ("grpc.max_send_message_length", int(max_message_bytes)),
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]


class _Undecodable:
    """What a lenient deserializer hands the servicer for bytes that are not its message."""

    def __repr__(self) -> str:
        return "UNDECODABLE"


UNDECODABLE = _Undecodable()


def _lenient(message_type):
    def deserialize(raw: bytes):
        try:
            return message_type.FromString(raw)
        except Exception:  # noqa: BLE001 (DecodeError, or a RuntimeWarning-free failure of upb)
            return UNDECODABLE
    return deserialize


_KINDS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def add_servicer(server, service: str, methods: dict) -> None:
    """Register {method: (kind, behaviour, request type, response type)} on a sync or aio server.
    Requests that do not decode reach the behaviour as UNDECODABLE (gRPC itself would answer
    INTERNAL, or on a stream end it silently), so that the servicer answers INVALID_ARGUMENT."""
    handlers = {
        name: _KINDS[kind](behaviour, request_deserializer=_lenient(request),
                           response_serializer=response.SerializeToString)
        for name, (kind, behaviour, request, response) in methods.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(service, handlers)


def warn_plaintext(listen: str, insecure: bool) -> None:
    """One line on stderr when plaintext is served to other machines."""
    if not insecure:
        return
    try:
        host, _ = split_address(listen)
    except EdgeError:
        return  # add_port refuses it
    if not is_loopback(host):
        print(f"warning: --insecure on {listen}: anyone on the network can call this server and read its "
              "traffic; use --tls-cert/--tls-key/--tls-ca (`nonn certs DIR`) off a trusted network",
              file=sys.stderr, flush=True)


def start_server(
    register,
    service_names: list[str],
    listen: str,
    tls,
    insecure: bool,
    *,
    max_message_bytes: int,
    workers: int,
    stream_threads: int = 0,
    interceptors=(),
    health_servicer: health.HealthServicer | None = None,
) -> tuple[grpc.Server, int, str, health.HealthServicer]:
    """Build, bind and start a server; `register(server)` adds the servicers. `workers`
    threads serve calls, plus `stream_threads` for long-lived streams.

    Returns (server, bound port, security mode, health servicer).
    """
    if max_message_bytes < 1024:
        raise EdgeError(f"max message size must be at least 1024 bytes, got {max_message_bytes}")
    check_address(listen, "--listen")
    credentials, mode = tls_.server_credentials(tls, insecure)
    warn_plaintext(listen, insecure)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers + stream_threads, thread_name_prefix="nonn-rpc"),
        options=server_options(max_message_bytes),
        maximum_concurrent_rpcs=16 * workers + stream_threads,
        interceptors=list(interceptors),
    )
    register(server)
    health_servicer = health_servicer or health.HealthServicer()
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


def serve_until_signal(stop, banner: str, grace_s: float = GRACE_S, events=None, **start_fields) -> int:
    """Print `banner` (or tell `events` so, with `start_fields`), block until SIGTERM or SIGINT,
    then call stop(grace_s)."""
    event = threading.Event()
    previous = {s: signal.signal(s, lambda *_: event.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if events is None:
            print(banner, flush=True)
        else:
            events.emit("start", banner, **start_fields)
        while not event.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop(grace_s)
        if events is None:
            print("nonn: stopped", file=sys.stderr, flush=True)
        else:
            events.emit("stop", "nonn: stopped")
    return 0


def stop_server(server: grpc.Server, health_servicer: health.HealthServicer, grace_s: float,
                end_streams=None) -> None:
    """Report NOT_SERVING, stop taking calls, let running ones finish within `grace_s`;
    `end_streams()` ends the long-lived calls that would otherwise hold it that long."""
    health_servicer.enter_graceful_shutdown()
    stopped = server.stop(grace_s)
    if end_streams is not None:
        end_streams()
    stopped.wait(grace_s + 1.0)


# -- grpc.aio servers, driven from synchronous code ------------------------------------

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's serving loop, started on first use in a daemon thread."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(_keep_aio_initialised, ready)
                loop.run_forever()

            threading.Thread(target=run, name="nonn-serving-loop", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def _keep_aio_initialised(ready: threading.Event) -> None:
    """grpc.aio sets up its poller with the first channel or server and tears it down with
    the last; set up again on a loop that outlived it, the old poller's callback fails on a
    closed descriptor (EBADF noise). An unused channel, which never connects, keeps one poller
    for the loop's lifetime."""
    global _keepalive_channel
    _keepalive_channel = grpc.aio.insecure_channel("localhost:9")
    ready.set()


_keepalive_channel = None


def run_on_loop(coro, timeout: float | None = None):
    """Run a coroutine on the serving loop from another thread and return its result."""
    return asyncio.run_coroutine_threadsafe(coro, event_loop()).result(timeout)


_scheduled: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks


def on_loop_thread() -> bool:
    """Whether the caller runs on the serving loop's own thread (an RPC handler, a callback):
    there, waiting for the loop would wait for itself."""
    loop = _loop
    if loop is None or loop.is_closed():
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def run_or_schedule(coro, timeout: float | None = None):
    """From another thread, run_on_loop(coro, timeout). On the loop's own thread, start it as a
    task and return that task at once, without waiting."""
    if not on_loop_thread():
        return run_on_loop(coro, timeout)
    task = asyncio.get_running_loop().create_task(coro)
    _scheduled.add(task)
    task.add_done_callback(_scheduled.discard)
    return task


class AioServer:
    """A started grpc.aio server; stop() works from any thread and also runs `on_stop`."""

    def __init__(self, server: grpc.aio.Server, health_servicer, on_stop=None):
        self._server = server
        self.health = health_servicer
        self._on_stop = on_stop
        self._stopped = threading.Event()
        self._stopping: asyncio.Task | None = None  # stop() called on the loop's own thread

    async def _stop(self, grace: float | None) -> None:
        try:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(grace)
        finally:
            if self._on_stop is not None:
                await self._on_stop()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop accepting calls, let running ones finish within `grace` seconds, then return
        an Event that is set (the server is stopped when this returns). Called on the serving
        loop's own thread, it starts stopping and returns at once; the Event is set once stopped."""
        if self._stopped.is_set():
            return self._stopped
        if on_loop_thread():
            if self._stopping is None:
                self._stopping = run_or_schedule(self._stop(grace))
                self._stopping.add_done_callback(lambda _: self._stopped.set())
            return self._stopped
        try:
            run_on_loop(self._stop(grace), None if grace is None else grace + 5.0)
        finally:
            self._stopped.set()
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


async def start_aio_server(register, service_names: list[str], listen: str, tls, insecure: bool, *,
                           max_message_bytes: int, max_concurrent_rpcs: int | None, interceptors=()):
    """Build, bind and start a grpc.aio server on the running loop; `register(server)` adds the
    servicers. Returns (server, bound port, security mode, health servicer)."""
    if max_message_bytes < 1024:
        raise EdgeError(f"max message size must be at least 1024 bytes, got {max_message_bytes}")
    check_address(listen, "--listen")
    credentials, mode = tls_.server_credentials(tls, insecure)
    warn_plaintext(listen, insecure)
    server = grpc.aio.server(options=server_options(max_message_bytes), maximum_concurrent_rpcs=max_concurrent_rpcs,
                             interceptors=list(interceptors))
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = tls_.add_port(server, listen, credentials)
    await server.start()
    return server, port, mode, health_servicer


def stop_event_loop() -> None:
    """Stop the serving loop and wait for its thread (a process that is about to exit)."""
    global _loop
    with _lock:
        loop, _loop = _loop, None
    if loop is not None and not loop.is_closed():
        thread_done = threading.Event()
        loop.call_soon_threadsafe(lambda: (loop.stop(), thread_done.set()))
        thread_done.wait(5.0)
