"""The transport floor: the least gateway overhead Python gRPC allows on this machine.

The topology of a NoNN deployment (client -> relay -> K workers -> relay -> client, over
long-lived streams, with the same security) and none of the runtime's own work: each worker
runs a student model on a fixed input for every message and answers 512 bytes; the relay
forwards the client's bytes to every worker and answers once all have replied. Its overhead
(end-to-end minus the slowest worker's compute) is what any gateway written on grpcio pays
here before it does anything of its own.

    python -m nonn.bench.transport_floor worker --model M.onnx --listen HOST:PORT [--cpu N] [TLS]
    python -m nonn.bench.transport_floor relay --workers HOST:PORT,... --listen HOST:PORT [TLS]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Self

from nonn.edge.grpc_io import use_polling_io

SERVICE = "nonn.floor.Floor"
METHOD = f"/{SERVICE}/Stream"
REPLY_BYTES = 512  # a student's 128 float32 features
ANSWER_BYTES = 200  # about a Prediction


def _tls(args):
    from nonn.edge.tls import TLSFiles

    return None if args.insecure else TLSFiles(args.tls_cert, args.tls_key, args.tls_ca)


def _worker(args) -> int:
    """A sync gRPC server (like a node) running the model once per message, pinned like a node."""
    from concurrent import futures

    import grpc
    import numpy as np

    from nonn.edge import serving
    from nonn.edge.affinity import parse_cpus, pin_process
    from nonn.edge.node import load_session
    from nonn.edge.tls import add_port, server_credentials

    if args.cpu is not None:
        pin_process(parse_cpus(args.cpu))
    session = load_session(args.model, 1)
    spec = session.get_inputs()[0]
    x = np.zeros([1, *spec.shape[1:]], dtype=np.float32)
    padding = b"f" * (REPLY_BYTES - 8)

    def stream(requests, _context):
        for _ in requests:
            start = time.perf_counter_ns()
            session.run(None, {spec.name: x})
            yield ((time.perf_counter_ns() - start) // 1000).to_bytes(8, "little") + padding

    credentials, _ = server_credentials(_tls(args), args.insecure)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(stream)}),))
    port = add_port(server, args.listen, credentials)
    server.start()
    return serving.serve_until_signal(lambda grace: server.stop(grace).wait(),
                                      f"nonn floor worker on {serving.bound_address(args.listen, port)}")


def _relay(args) -> int:
    """A grpc.aio server that forwards each message to every worker and answers when all did."""
    import grpc

    from nonn.edge import serving
    from nonn.edge.tls import (
        TLSFiles,
        add_port,
        channel_credentials,
        server_credentials,
    )

    tls = _tls(args)
    server_creds, _ = server_credentials(tls, args.insecure)
    worker_creds = None if args.insecure else channel_credentials(TLSFiles(tls.cert, tls.key, tls.ca), False)
    answer_padding = b"p" * (ANSWER_BYTES - 8)

    async def start():
        channels = [grpc.aio.insecure_channel(w) if worker_creds is None else grpc.aio.secure_channel(w, worker_creds)
                    for w in args.workers.split(",")]

        async def stream(requests, _context):
            calls = [channel.stream_stream(METHOD)() for channel in channels]  # this client stream's own
            try:
                async for request in requests:
                    for call in calls:
                        await call.write(request)
                    replies = [await call.read() for call in calls]
                    slowest = max(int.from_bytes(r[:8], "little") for r in replies)
                    yield slowest.to_bytes(8, "little") + answer_padding
            finally:
                for call in calls:
                    call.cancel()

        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(stream)}),))
        port = add_port(server, args.listen, server_creds)
        await server.start()
        return server, port

    server, port = serving.run_on_loop(start())
    try:
        return serving.serve_until_signal(lambda grace: serving.run_on_loop(server.stop(grace)),
                                          f"nonn floor relay on {serving.bound_address(args.listen, port)}")
    finally:
        serving.stop_event_loop()


async def _client(address: str, credentials, payload: bytes, requests: int, warmup: int) -> list[float]:
    """Overheads in ms: end-to-end minus the slowest worker's compute, one message at a time."""
    import grpc

    channel = (grpc.aio.insecure_channel(address) if credentials is None
               else grpc.aio.secure_channel(address, credentials))
    try:
        call = channel.stream_stream(METHOD)()
        overheads = []
        for i in range(warmup + requests):
            start = time.perf_counter()
            await call.write(payload)
            reply = await call.read()
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            if i >= warmup:
                overheads.append(elapsed_ms - int.from_bytes(reply[:8], "little") / 1000.0)
        call.cancel()
        return overheads
    finally:
        await channel.close()


class TransportFloor:
    """K floor workers (worker k on core k) and a relay as child processes; measure() as often as needed."""

    def __init__(self, models: list[Path], input_bytes: int, logdir: Path, *, certs: Path | None,
                 cores: list[int]):
        from nonn.deploy.processes import ChildProcesses

        self.input_bytes = int(input_bytes)
        self.certs = certs
        self.processes = ChildProcesses(logdir)
        try:
            workers = [self.processes.spawn(f"floor worker {k}", [
                "worker", "--model", str(model), "--listen", "127.0.0.1:0",
                *(["--cpu", str(cores[k % len(cores)])] if cores else []), *self._tls_args(f"node_{k}")],
                module="nonn.bench.transport_floor") for k, model in enumerate(models)]
            self.processes.await_ready(workers)
            self.relay = self.processes.start("floor relay", [
                "relay", "--workers", ",".join(w.address for w in workers), "--listen", "127.0.0.1:0",
                *self._tls_args("gateway")], module="nonn.bench.transport_floor")
        except BaseException:
            self.processes.close()
            raise

    def describe(self) -> list[dict]:
        """role, index, pid and address of the floor's processes."""
        return [{"role": "floor " + c.name.split()[1], "index": int(c.name.split()[2]) if c.name.count(" ") == 2
                 else None, "pid": c.pid, "address": c.address} for c in self.processes.children]

    def _tls_args(self, name: str) -> list[str]:
        from nonn.deploy.cluster import Security

        return Security(self.certs).server_args(name)

    def measure(self, requests: int, warmup: int = 50) -> list[float]:
        """Overheads in ms of `requests` messages, after `warmup` unrecorded ones."""
        from nonn.deploy.cluster import Security
        from nonn.edge.tls import channel_credentials

        credentials = channel_credentials(Security(self.certs).client_tls(), self.certs is None)
        return asyncio.run(_client(self.relay.address, credentials, b"i" * self.input_bytes, requests, warmup))

    def close(self) -> None:
        self.processes.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    use_polling_io()  # before grpc is imported, as in the node and gateway processes
    parser = argparse.ArgumentParser(prog="python -m nonn.bench.transport_floor")
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("worker", "relay"):
        p = sub.add_parser(role)
        p.add_argument("--listen", default="127.0.0.1:0")
        p.add_argument("--insecure", action="store_true")
        p.add_argument("--tls-cert")
        p.add_argument("--tls-key")
        p.add_argument("--tls-ca")
        if role == "worker":
            p.add_argument("--model", required=True)
            p.add_argument("--cpu")
        else:
            p.add_argument("--workers", required=True)
    args = parser.parse_args(argv)
    return _worker(args) if args.role == "worker" else _relay(args)


if __name__ == "__main__":
    sys.exit(main())
