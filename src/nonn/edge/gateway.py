"""The gateway: fans an image out to the K nodes at once, concatenates, runs the head.

Everything runs on one asyncio event loop (grpc.aio): the server, the K node channels and
the Python work of a request. Images travel to each node over long-lived FeaturesStream
calls (node_link.py), batched while the node is busy. Clients call Classify once per image,
or keep a ClassifyStream open and send many.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import numpy as np

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge import authz, serving
from nonn.edge.addresses import check_address
from nonn.edge.channels import channel_options, open_aio_channel
from nonn.edge.errors import EdgeError, TensorError
from nonn.edge.fan_out import FanOut
from nonn.edge.manifest import Manifest, load_gateway_manifest
from nonn.edge.node import load_session
from nonn.edge.node_link import MESSAGE_HEADROOM_BYTES, Job, NodeLink
from nonn.edge.operations import GatewayOperations
from nonn.edge.options import GatewayOptions
from nonn.edge.pixels import Normalisation, model_input
from nonn.edge.tensors import decode_array
from nonn.edge.serving import UNDECODABLE
from nonn.edge.tls import TLSFiles, channel_credentials, server_credentials, server_identity

SERVICE_NAME = "nonn.v1.Gateway"
MAX_IN_FLIGHT_PER_STREAM = 64  # ClassifyStream requests handled at once on one stream
_OK = grpc.StatusCode.OK


def parse_nodes(nodes) -> list[str]:
    """A list of host:port from a list or a comma-separated string."""
    if isinstance(nodes, str):
        nodes = nodes.split(",")
    addresses = [n.strip() for n in nodes if n.strip()]
    if not addresses:
        raise EdgeError("--nodes names no address; pass --nodes host:port,host:port,...")
    for address in addresses:
        check_address(address, "--nodes address", allow_any_port=False)
    return addresses


class Refused(Exception):
    """A classification that gets a gRPC status instead of a Prediction."""

    def __init__(self, code: grpc.StatusCode, message: str, missing: tuple[int, ...] = ()):
        super().__init__(message)
        self.code, self.message, self.missing = code, message, missing  # missing: the nodes that failed


class GatewayServicer(pb_grpc.GatewayServicer):
    """Classify: normalise, fan out to every node, gather within the deadline, run the head.

    The node links are opened by open() on the serving loop; without them the servicer
    still preprocesses and predicts (benchmarks and tests use that in-process). `options`
    (or GatewayOptions fields as keywords) set the deadline, degraded mode, message size,
    threads and batches; `credentials` reach the nodes (None: plaintext)."""

    def __init__(self, manifest: Manifest, nodes: list[str], options: GatewayOptions | None = None, *,
                 credentials: grpc.ChannelCredentials | None = None, **fields):
        options = GatewayOptions.of(options, **fields)
        if len(nodes) != len(manifest.students):
            raise EdgeError(
                f"{manifest.path} lists {len(manifest.students)} students but --nodes names {len(nodes)} "
                "addresses; give one host:port per student, in partition order"
            )
        if not options.deadline_s > 0:
            raise EdgeError(f"the deadline must be positive, got {options.deadline_s * 1000:g} ms")
        if options.max_batch < 1:
            raise EdgeError(f"--max-batch must be at least 1, got {options.max_batch}")
        self.options = options
        self.manifest = manifest
        self.nodes = nodes
        self.deadline_s = float(options.deadline_s)
        self.degraded = options.degraded
        self.max_batch = int(options.max_batch)
        self.head = load_session(manifest.head_file, options.intra_op_threads)
        self._check_head()
        self._norm = Normalisation.of(manifest.scale, manifest.mean, manifest.std)
        self._sizes = manifest.partition_sizes
        self._zeros = [np.zeros((1, n), dtype=np.float32) for n in self._sizes]
        self._credentials = credentials
        self._max_message_bytes = int(options.max_message_bytes)
        self.channels: list[grpc.aio.Channel] = []
        self.links: list[NodeLink] = []
        self.fan_out: FanOut | None = None
        self.listeners: list = []  # told of every answer and refusal (metrics, MQTT): see operations.py

    async def open(self) -> None:
        """Open one channel per node on the running loop (they connect on first use)."""
        options = channel_options(self._max_message_bytes, to_node=True)
        for k, address in enumerate(self.nodes):
            channel = open_aio_channel(address, self._credentials, options)
            self.channels.append(channel)
            student = self.manifest.students[k]
            self.links.append(NodeLink(channel, self._sizes[k], describe=f"is it serving {student.file.name}?",
                                       expect_sha256=student.sha256, model_name=student.file.name))
        # a batch's pixels stay under the gateway's own message limit, with room for the framing
        self.fan_out = FanOut(self.links, max_batch=self.max_batch,
                              max_batch_bytes=max(1, self._max_message_bytes - MESSAGE_HEADROOM_BYTES))
        for link in self.links:
            link.on_idle = self.fan_out.pump

    async def aclose(self) -> None:
        channels, links, self.channels, self.links = self.channels, self.links, [], []
        if self.fan_out is not None:
            self.fan_out.close()
        for link in links:
            await link.close()
        for channel in channels:
            await channel.close()

    def close(self) -> None:
        """Close the node links; on the serving loop's own thread (a handler, a callback) this
        starts closing them and returns at once, since waiting there would wait for itself."""
        if self.channels:
            serving.run_or_schedule(self.aclose(), 10.0)

    def _check_head(self) -> None:
        inputs, outs = self.head.get_inputs(), self.head.get_outputs()
        if len(inputs) != 1 or len(outs) < 1:
            raise EdgeError("head.onnx must have exactly one input and one output; re-export it")
        inp = inputs[0]
        width, classes = inp.shape[-1], outs[0].shape[-1]
        total = sum(self.manifest.partition_sizes)
        if isinstance(width, int) and width != total:
            raise EdgeError(f"head.onnx takes {width} features but partition_sizes sum to {total}; re-export")
        if isinstance(classes, int) and classes != len(self.manifest.classes):
            raise EdgeError(f"head.onnx has {classes} outputs but the manifest lists "
                            f"{len(self.manifest.classes)} classes; re-export")
        self._head_input, self._head_outputs = inp.name, [outs[0].name]

    # -- preprocessing -------------------------------------------------------------------

    def preprocess(self, image: pb.Image) -> np.ndarray:
        """Raw pixels -> what the nodes take (see pixels.model_input)."""
        pixels = decode_array(image.shape, image.dtype, image.data, allowed=("uint8", "float32"), what="image")
        return model_input(pixels, image.layout, self.manifest.input_shape, self._norm, self.manifest.node_pixels)

    # -- the RPCs ------------------------------------------------------------------------

    async def Classify(self, request, context):
        remaining = context.time_remaining()
        if request is UNDECODABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a nonn.v1.Image message")
        try:
            return await self.classify(request, remaining)
        except Refused as refused:
            await context.abort(refused.code, refused.message)

    async def Describe(self, request, context):
        return pb.ModelInfo(input_shape=list(self.manifest.input_shape), classes=list(self.manifest.classes))

    async def ClassifyStream(self, request_iterator, context):
        loop = asyncio.get_running_loop()
        ready: list[pb.ClassifyReply] = []  # answers not yet written
        wake = asyncio.Event()
        tasks: set[asyncio.Task] = set()
        reading = [True]

        def answer(reply: pb.ClassifyReply) -> None:
            ready.append(reply)
            wake.set()

        async def one(request: pb.ClassifyRequest) -> None:
            timeout = request.timeout_us / 1e6 if request.timeout_us > 0 else None
            try:
                answer(pb.ClassifyReply(id=request.id, prediction=await self.classify(request.image, timeout)))
            except Refused as refused:
                answer(pb.ClassifyReply(id=request.id, code=refused.code.value[0], error=refused.message))
            except Exception as exc:  # noqa: BLE001 (every request is answered, and the stream goes on)
                text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no details"
                answer(pb.ClassifyReply(id=request.id, code=grpc.StatusCode.INTERNAL.value[0],
                                        error=f"the gateway failed on this image: {text}"))

        bad = [False]

        async def read() -> None:
            try:
                async for message in request_iterator:
                    if message is UNDECODABLE:  # answer what is in flight, then end INVALID_ARGUMENT
                        bad[0] = True
                        break
                    if self.fan_out is not None:
                        self.fan_out.expect(min(len(message.requests), MAX_IN_FLIGHT_PER_STREAM - len(tasks)))
                    for request in message.requests:
                        if len(tasks) >= MAX_IN_FLIGHT_PER_STREAM:
                            answer(pb.ClassifyReply(
                                id=request.id, code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                                error=f"more than {MAX_IN_FLIGHT_PER_STREAM} images in flight on one stream; "
                                      "wait for replies or open another stream"))
                            continue
                        task = loop.create_task(one(request))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                while tasks:  # the client closed its side: answer what is in flight
                    await asyncio.wait(set(tasks))
            finally:
                reading[0] = False
                wake.set()

        reader = loop.create_task(read())
        try:
            while True:
                if ready:  # every answer that is ready leaves in one message
                    replies, ready[:] = list(ready), []
                    yield pb.ClassifyReplies(replies=replies)
                elif not reading[0]:
                    break
                else:
                    await wake.wait()
                    wake.clear()
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()
        if bad[0]:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a message on the stream is not a "
                                "nonn.v1.ClassifyRequests; every request before it is answered, the stream ends here")

    async def classify(self, image: pb.Image, timeout: float | None = None) -> pb.Prediction:
        """One image to a Prediction within min(`timeout`, the deadline); Refused otherwise."""
        if not self.listeners:
            return await self._classify(image, timeout)
        start = time.perf_counter()
        try:
            prediction = await self._classify(image, timeout)
        except Refused as refused:
            for listener in self.listeners:
                listener.refused(image, refused.code.name, start, refused.missing)
            raise
        except Exception:
            for listener in self.listeners:
                listener.refused(image, "INTERNAL", start)
            raise
        for listener in self.listeners:
            listener.answered(image, prediction, start)
        return prediction

    async def _classify(self, image: pb.Image, timeout: float | None) -> pb.Prediction:
        start = time.perf_counter()
        try:
            x = self.preprocess(image)
        except TensorError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        timeout = self.deadline_s if timeout is None else max(0.0, min(self.deadline_s, timeout))
        parts, timings, failures, missing = [], [], [], []
        for k, (features, timing, problem) in enumerate(await self._fan_out(x, timeout)):
            if problem is not None:
                failures.append(problem)
                if problem[0] != grpc.StatusCode.CANCELLED:  # not "another node failed first"
                    missing.append(k)
                features = self._zeros[k]
            parts.append(features)
            timings.append(timing)
        if failures and (not self.degraded or len(failures) == len(timings)):
            real = [f for f in failures if f[0] != grpc.StatusCode.CANCELLED] or failures
            prefix = "all nodes failed: " if self.degraded else ""
            raise Refused(real[0][0], prefix + "; ".join(message for _, message in real), tuple(missing))
        return self.predict(parts, timings, bool(failures), start)

    def predict(self, parts: list[np.ndarray], timings: list[pb.NodeTiming], degraded: bool,
                start: float) -> pb.Prediction:
        """The head on the concatenated features, and the Prediction around it."""
        head_start = time.perf_counter()
        (logits,) = self.head.run(self._head_outputs, {self._head_input: np.concatenate(parts, axis=1)})
        head_ms = (time.perf_counter() - head_start) * 1000.0
        if not np.isfinite(logits).all():
            raise Refused(grpc.StatusCode.INTERNAL, "the head computed NaN or infinite logits from the nodes' "
                                                    "features; check the exported models")
        logits = logits[0].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        label = int(np.argmax(logits))
        return pb.Prediction(
            label=label,
            class_name=self.manifest.classes[label] if label < len(self.manifest.classes) else str(label),
            probabilities=probabilities.tolist(),
            logits=logits.tolist(),
            nodes=timings,
            bytes_sent=sum(t.bytes_sent for t in timings),
            bytes_received=sum(t.bytes_received for t in timings),
            degraded=degraded,
            missing_nodes=[t.address for t in timings if t.missing],
            gateway_ms=(time.perf_counter() - start) * 1000.0,
            head_ms=head_ms,
        )

    async def _fan_out(self, x: np.ndarray, timeout: float) -> list:
        """Send the image to every node at once; (features or None, NodeTiming, (status,
        message) or None) per node, in partition order, within `timeout`."""
        loop = asyncio.get_running_loop()
        fail_fast = not self.degraded
        waiter = loop.create_future()
        pending = [len(self.links)]

        def finished(future) -> None:
            if future.cancelled():
                return
            pending[0] -= 1
            if not waiter.done() and (pending[0] == 0 or (fail_fast and future.result().code is not _OK)):
                waiter.set_result(True)

        deadline = loop.time() + timeout
        jobs = [Job(x, loop.create_future(), deadline) for _ in self.links]
        for job in jobs:
            job.future.add_done_callback(finished)
        self.fan_out.submit(jobs)
        timer = loop.call_at(deadline, lambda: waiter.done() or waiter.set_result(False))
        try:
            woken = await waiter
        finally:
            timer.cancel()
            for job in jobs:
                if not job.future.done():
                    job.dropped = True  # not sent if it still waits; a late answer is dropped
                    job.future.cancel()
        results = []
        for k, job in enumerate(jobs):
            timing = pb.NodeTiming(index=k, address=self.nodes[k])
            features, problem = None, None
            if job.future.cancelled():
                problem = ((grpc.StatusCode.CANCELLED, "was not awaited: another node failed first") if woken
                           else (grpc.StatusCode.DEADLINE_EXCEEDED, f"did not answer within {timeout * 1000:.0f} ms"))
            else:
                answer = job.future.result()
                if answer.code is not _OK:
                    problem = self._describe(answer.code, answer.details, timeout)
                else:
                    features = answer.features
                    timing.bytes_sent, timing.bytes_received = answer.bytes_sent, answer.bytes_received
                    timing.round_trip_ms = (answer.done - job.created) * 1000.0
                    timing.compute_ms = answer.compute_us / 1000.0
                    timing.batch_size = answer.batch_size
            if problem is not None:
                code, detail = problem
                problem = (code, f"node {k} ({self.nodes[k]}) {detail}")
                timing.missing, timing.error = True, f"{code.name}: {problem[1]}"
            results.append((features, timing, problem))
        return results

    @staticmethod
    def _describe(code: grpc.StatusCode, details: str | None, timeout: float) -> tuple[grpc.StatusCode, str]:
        details = (details or "").strip().splitlines()[0][:300] if (details or "").strip() else ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return code, f"did not answer within {timeout * 1000:.0f} ms"
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return code, details
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return code, f"is unavailable: {details}" if code == grpc.StatusCode.UNAVAILABLE else details
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return code, details
        # The node rejected what the gateway sent: the deployment does not match the manifest.
        return grpc.StatusCode.FAILED_PRECONDITION, f"answered {code.name}: {details}"


class GatewayServer:
    """The running gRPC server plus the gateway's node channels; stop() closes both."""

    def __init__(self, server: serving.AioServer, servicer: GatewayServicer):
        self._server = server
        self.servicer = servicer

    def stop(self, grace: float | None = None):
        return self._server.stop(grace)

    def __getattr__(self, name):
        return getattr(self._server, name)


def gateway_policy(tls, allow_client=()):
    """With mutual TLS: Classify takes the clients of this gateway's cluster and `allow_client`."""
    me = server_identity(tls)
    if me is None:
        return ()
    rule = authz.Rule(me.cluster, ("client",), tuple(allow_client))
    return (authz.AioAuthorizer(authz.Policy({f"/{SERVICE_NAME}/": rule}, authz.Rule(me.cluster))),)


def _start(manifest_path, nodes, listen: str, options: GatewayOptions):
    check_address(listen, "--listen")
    addresses = parse_nodes(nodes)
    server_credentials(options.tls, options.insecure)  # refuse plaintext before loading anything
    interceptors = gateway_policy(options.tls, options.allow_client)
    tls = TLSFiles.of(options.tls)
    if options.insecure:
        credentials = None
    else:
        credentials = channel_credentials(TLSFiles(tls.cert, tls.key, options.nodes_ca or tls.ca), False)
    manifest = load_gateway_manifest(manifest_path)
    servicer = GatewayServicer(manifest, addresses, options, credentials=credentials)
    ops = servicer.ops = GatewayOperations(options, manifest, servicer.nodes)
    servicer.listeners = ops.listeners

    async def start():
        await servicer.open()
        try:
            server, port, mode, health = await serving.start_aio_server(
                lambda server: serving.add_servicer(server, SERVICE_NAME, {
                    "Classify": ("unary_unary", servicer.Classify, pb.Image, pb.Prediction),
                    "ClassifyStream": ("stream_stream", servicer.ClassifyStream, pb.ClassifyRequests,
                                       pb.ClassifyReplies),
                    "Describe": ("unary_unary", servicer.Describe, pb.DescribeRequest, pb.ModelInfo),
                }),
                [SERVICE_NAME], listen, tls, options.insecure,
                max_message_bytes=options.max_message_bytes, max_concurrent_rpcs=16 * max(1, options.workers),
                interceptors=interceptors,
            )
        except BaseException:
            await servicer.aclose()
            await ops.aclose()
            raise
        ops.watch_nodes(servicer.channels, health, [SERVICE_NAME])

        async def stop():
            await servicer.aclose()
            await ops.aclose()

        return serving.AioServer(server, health, stop), port, mode

    ops.start()
    try:
        server, port, mode = serving.run_on_loop(start())
    except BaseException:
        ops.close()
        raise
    return GatewayServer(server, servicer), port, mode, manifest


def serve_gateway(manifest_path: str | Path, nodes, listen: str = "127.0.0.1:0",
                  options: GatewayOptions | None = None, **fields) -> tuple[GatewayServer, int]:
    """Start the gateway and return (server, bound port).

    `nodes` lists host:port per student, in partition order. `options` (a GatewayOptions,
    whose fields document every setting), with any of its fields given as keywords on top:
    serve_gateway(m, nodes, insecure=True, deadline_s=0.5). The server runs on the
    process's serving loop.
    """
    server, port, *_ = _start(manifest_path, nodes, listen, GatewayOptions.of(options, **fields))
    return server, port


def run_gateway(manifest_path: str | Path, nodes, listen: str = "127.0.0.1:0",
                options: GatewayOptions | None = None, **fields) -> int:
    """Serve the gateway until SIGTERM/SIGINT; prints one line naming the bound address.
    Takes what serve_gateway takes."""
    server, port, mode, manifest = _start(manifest_path, nodes, listen, GatewayOptions.of(options, **fields))
    banner = (f"nonn gateway serving {manifest.path.name} ({len(manifest.students)} nodes) on "
              f"{serving.bound_address(listen, port)} ({mode})")
    try:
        return serving.serve_until_signal(server.stop, banner, events=server.servicer.ops.events,
                                          **server.servicer.ops.start_fields(serving.bound_address(listen, port), mode))
    finally:
        serving.stop_event_loop()
