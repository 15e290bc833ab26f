"""Prometheus metrics of a node or a gateway (`--metrics-listen HOST:PORT`), served over HTTP
by prometheus-client (loaded only when asked for) from a registry of their own.

Every name starts with nonn_; the README lists them. A server without --metrics-listen gets
the no-op `NO_METRICS`, so the serving code calls the same hooks either way."""

from __future__ import annotations

import time

from nonn.edge.errors import EdgeError

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise EdgeError(f"--metrics-listen {listen!r} is not HOST:PORT; pass e.g. 0.0.0.0:9100")
    return host.strip("[]"), int(port)


def _tensor_bytes(array) -> int:
    """What the reply Tensor of `array` weighs serialized (as the gateway counts it)."""
    from nonn.edge.tensors import to_tensor

    return to_tensor(array).ByteSize()


class _Exporter:
    """A registry of its own and the HTTP server that exposes it."""

    def __init__(self, listen: str, role: str):
        try:
            import prometheus_client as prom
        except ImportError:
            raise EdgeError("--metrics-listen needs prometheus-client; pip install prometheus-client "
                            "(or nonn-edge[metrics])") from None
        self.prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self.role = role
        self._listen = listen
        self._http = None
        self.port = 0

    def start(self) -> int:
        host, port = parse_listen(self._listen)
        try:
            self._http, _thread = self.prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise EdgeError(f"cannot serve metrics on {self._listen}: {exc.strerror}; "
                            "choose another --metrics-listen HOST:PORT") from None
        self.port = self._http.server_address[1]
        return self.port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def counter(self, name, doc, labels=()):
        return self.prom.Counter(name, doc, labels, registry=self.registry)

    def histogram(self, name, doc, buckets, labels=()):
        return self.prom.Histogram(name, doc, labels, buckets=buckets, registry=self.registry)


class NodeMetrics(_Exporter):
    """Requests by status, request latency, model compute time, batch sizes, bytes, the model."""

    def __init__(self, listen: str, model_file: str, model_sha256: str):
        super().__init__(listen, "node")
        self.requests = self.counter("nonn_node_requests", "requests answered, by gRPC status code", ["code"])
        self.latency = self.histogram("nonn_node_request_seconds", "from a request's arrival to its answer",
                                      LATENCY_BUCKETS)
        self.compute = self.histogram("nonn_node_compute_seconds", "the student model's run alone",
                                      LATENCY_BUCKETS)
        self.batch = self.histogram("nonn_node_batch_size", "images per request", BATCH_BUCKETS)
        self.bytes_in = self.counter("nonn_node_received_bytes", "serialized request tensors received")
        self.bytes_out = self.counter("nonn_node_sent_bytes", "serialized feature tensors sent")
        info = self.prom.Info("nonn_model", "the model this process serves", registry=self.registry)
        info.info({"role": "node", "file": model_file, "sha256": model_sha256})
        for code in ("OK", "INVALID_ARGUMENT", "INTERNAL"):
            self.requests.labels(code)  # present at zero, so a scrape before any request shows them

    def observe(self, tensor, result, started: float) -> None:
        """One request: its Tensor and what StudentServicer._infer answered for it."""
        features, compute_us, problem = result
        self.requests.labels("OK" if problem is None else problem[0].name).inc()
        self.latency.observe(time.perf_counter() - started)
        if hasattr(tensor, "ByteSize"):  # not the marker of a request that did not decode
            self.bytes_in.inc(tensor.ByteSize())
        if problem is None:
            self.compute.observe(compute_us / 1e6)
            self.batch.observe(int(tensor.shape[0]) if len(tensor.shape) else 1)
            self.bytes_out.inc(_tensor_bytes(features))


class GatewayMetrics(_Exporter):
    """Classifications by status, latency, node batch sizes, degraded answers, missing nodes by
    node, bytes from clients / to nodes, the head's and students' SHA-256."""

    def __init__(self, listen: str, manifest):
        super().__init__(listen, "gateway")
        self.requests = self.counter("nonn_gateway_requests", "images answered, by gRPC status code", ["code"])
        self.latency = self.histogram("nonn_gateway_request_seconds", "from an image's arrival to its answer",
                                      LATENCY_BUCKETS)
        self.batch = self.histogram("nonn_gateway_node_batch_size",
                                    "images in the node message each image travelled in", BATCH_BUCKETS)
        self.degraded = self.counter("nonn_gateway_degraded", "answers with zero-filled features of a missing node")
        self.missing = self.counter("nonn_gateway_node_missing", "images a node did not answer in time",
                                    ["node", "address"])
        self.bytes_in = self.counter("nonn_gateway_received_bytes", "serialized bytes received", ["peer"])
        self.bytes_out = self.counter("nonn_gateway_sent_bytes", "serialized bytes sent", ["peer"])
        info = self.prom.Info("nonn_model", "the models this deployment serves", registry=self.registry)
        info.info({"role": "gateway", "file": manifest.head_file.name, "sha256": manifest.head_sha256,
                   "students_sha256": ",".join(s.sha256 for s in manifest.students)})
        for code in ("OK", "INVALID_ARGUMENT", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
            self.requests.labels(code)
        self._nodes = None

    def watch_nodes(self, addresses: list[str]) -> None:
        self._nodes = addresses
        for k, address in enumerate(addresses):
            self.missing.labels(str(k), address)

    def watch_reachability(self, watch) -> None:
        """nonn_gateway_node_up{node, address}: 1 while the node is reachable (read at each scrape)."""
        gauge = self.prom.Gauge("nonn_gateway_node_up", "1 while the gateway can reach the node, else 0",
                                ["node", "address"], registry=self.registry)
        for k, address in enumerate(self._nodes or []):
            gauge.labels(str(k), address).set_function(lambda k=k: float(watch.up[k]))

    def watch_publisher(self, publisher) -> None:
        """MQTT messages handed to the broker and dropped (queue full or broker down)."""
        gauge = self.prom.Gauge("nonn_gateway_mqtt_messages", "predictions for MQTT, by outcome", ["outcome"],
                                registry=self.registry)
        gauge.labels("published").set_function(lambda: publisher.published)
        gauge.labels("dropped").set_function(lambda: publisher.dropped)

    def answered(self, image, prediction, started: float) -> None:
        self.requests.labels("OK").inc()
        self.latency.observe(time.perf_counter() - started)
        self.bytes_in.labels("client").inc(image.ByteSize())
        self.bytes_out.labels("client").inc(prediction.ByteSize())
        self.bytes_out.labels("nodes").inc(prediction.bytes_sent)
        self.bytes_in.labels("nodes").inc(prediction.bytes_received)
        if prediction.degraded:
            self.degraded.inc()
        for timing in prediction.nodes:
            if timing.missing:
                self.missing.labels(str(timing.index), timing.address).inc()
            elif timing.batch_size:
                self.batch.observe(timing.batch_size)

    def refused(self, image, code: str, started: float, missing=()) -> None:
        self.requests.labels(code).inc()
        self.latency.observe(time.perf_counter() - started)
        self.bytes_in.labels("client").inc(image.ByteSize())
        for k in missing:
            self.missing.labels(str(k), self._nodes[k] if self._nodes else "").inc()

