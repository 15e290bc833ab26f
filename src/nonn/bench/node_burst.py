"""A node's memory after a burst of maximal requests: does its RSS come back near idle?

    python -m nonn.bench.node_burst --model DIR/onnx/student_0.onnx [--requests 40] [--concurrency 4]

Starts one node process (plaintext, loopback), warms it with single images, reads its idle
VmRSS, sends `requests` Features calls of the node's largest batch (what its stream's initial
metadata states; --images for a node that states none), `concurrency` at a time, and reads
its peak (VmHWM) and its VmRSS once the burst is over. --src runs the node from another
checkout's src/ (to measure the code before a change side by side). A benchmark: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

MIB = 1024 * 1024


def _start(model: Path, src: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "nonn.edge", "node", "--model", str(model), "--listen",
                             "127.0.0.1:0", "--insecure", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline().decode()
            if line.startswith("nonn node serving"):
                return proc, line.split(" on ", 1)[1].split(" ", 1)[0]
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"error: the node did not start (rc={proc.poll()})")


def burst(model: str | Path, *, requests: int = 40, concurrency: int = 4, images: int | None = None,
          src: str | Path | None = None, settle_s: float = 2.0, extra: list[str] = ()) -> dict:
    import grpc

    from nonn.deploy.procfs import peak_rss_bytes, rss_bytes
    from nonn.edge import nonn_pb2 as pb
    from nonn.edge import nonn_pb2_grpc as pb_grpc
    from nonn.edge.node import MAX_BATCH_KEY, load_session
    from nonn.edge.tensors import to_tensor

    model = Path(model)
    src = Path(src) if src else Path(__file__).resolve().parents[2]
    shape = [d if isinstance(d, int) else 1 for d in load_session(model).get_inputs()[0].shape[1:]]
    proc, address = _start(model, src, list(extra))
    try:
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * MIB),
                                                     ("grpc.max_receive_message_length", 64 * MIB)]) as channel:
            stub = pb_grpc.StudentStub(channel)
            one = to_tensor(np.zeros((1, *shape), np.float32))
            for _ in range(20):
                stub.Features(one, timeout=30)
            call = stub.FeaturesStream(iter([]), timeout=30)
            stated = dict(call.initial_metadata()).get(MAX_BATCH_KEY)
            list(call)
            n = images or (int(stated) if stated else None)
            if not n:
                raise SystemExit("error: this node states no largest batch; pass --images N")
            time.sleep(settle_s)
            idle = rss_bytes(proc.pid)
            batch = to_tensor(np.random.default_rng(0).normal(size=(n, *shape)).astype(np.float32))
            codes: dict[str, int] = {}

            def send(_):
                try:
                    stub.Features(batch, timeout=120)
                    return "OK"
                except grpc.RpcError as exc:
                    return exc.code().name

            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                for code in pool.map(send, range(requests)):
                    codes[code] = codes.get(code, 0) + 1
            seconds = time.perf_counter() - start
            time.sleep(settle_s)
            peak, after = peak_rss_bytes(proc.pid), rss_bytes(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    return {"model": model.name, "src": str(src), "images_per_request": n, "stated_max_batch": stated,
            "requests": requests, "concurrency": concurrency, "codes": codes, "seconds": round(seconds, 2),
            "idle_rss_mib": round(idle / MIB, 1), "peak_rss_mib": round(peak / MIB, 1),
            "after_rss_mib": round(after / MIB, 1), "after_over_idle": round(after / idle, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nonn.bench.node_burst", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, metavar="ONNX")
    parser.add_argument("--requests", type=int, default=40, metavar="N", help="default: 40")
    parser.add_argument("--concurrency", type=int, default=4, metavar="N", help="default: 4 (a node's workers)")
    parser.add_argument("--images", type=int, metavar="N", help="images per request (default: what the node states)")
    parser.add_argument("--src", metavar="DIR", help="run the node from this src/ directory (default: this one)")
    parser.add_argument("--max-batch-images", metavar="N", help="passed to the node")
    args = parser.parse_args(argv)
    extra = ["--max-batch-images", args.max_batch_images] if args.max_batch_images else []
    print(json.dumps(burst(args.model, requests=args.requests, concurrency=args.concurrency, images=args.images,
                           src=args.src, extra=extra), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
