"""What a node or gateway does besides answering: events (text or JSON logs), Prometheus
metrics, MQTT publishing, and the gateway's watch on its nodes. Built from the options;
each part is absent unless its flag asks for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nonn.edge.events import Events
from nonn.edge.files import sha256_file


class NodeOperations:
    def __init__(self, options, model_path: str | Path, sha256: str | None = None):
        self.events = Events("node", options.log_format)
        self.metrics = None
        self._model = Path(model_path)
        if options.metrics_listen:
            from nonn.edge.metrics import NodeMetrics, parse_listen

            parse_listen(options.metrics_listen)
            self.metrics = NodeMetrics(options.metrics_listen, self._model.name, sha256 or sha256_file(self._model))

    def start(self) -> None:
        if self.metrics is not None:
            self.metrics.start()

    def start_fields(self, address: str, mode: str) -> dict:
        fields = {"address": address, "security": mode, "model": self._model.name}
        if self.metrics is not None:
            fields["metrics_port"] = self.metrics.port
        return fields

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()


class GatewayOperations:
    def __init__(self, options, manifest, nodes: list[str]):
        self.events = Events("gateway", options.log_format)
        self.metrics = self.publisher = self.node_watch = None
        self._manifest, self._nodes, self._degraded = manifest, nodes, options.degraded
        if options.metrics_listen:
            from nonn.edge.metrics import GatewayMetrics, parse_listen

            parse_listen(options.metrics_listen)
            self.metrics = GatewayMetrics(options.metrics_listen, manifest)
            self.metrics.watch_nodes(nodes)
        if options.mqtt:
            from nonn.edge.mqtt import Publisher

            self.publisher = Publisher(options.mqtt, user=options.mqtt_user,
                                       password_file=options.mqtt_password_file, ca=options.mqtt_ca,
                                       cert=options.mqtt_cert, key=options.mqtt_key, queue_size=options.mqtt_queue,
                                       events=self.events)
            if self.metrics is not None:
                self.metrics.watch_publisher(self.publisher)
        self.listeners = [part for part in (self.metrics, self.publisher) if part is not None]
        self._closed = False

    def start(self) -> None:
        if self.metrics is not None:
            self.metrics.start()
        if self.publisher is not None:
            self.publisher.start()

    def watch_nodes(self, channels, health, service_names: list[str]) -> None:
        """On the serving loop, once the server runs: follow the nodes' reachability."""
        from nonn.edge.node_watch import NodeWatch

        self.node_watch = NodeWatch(channels, self._nodes, health, service_names, degraded=self._degraded,
                                    events=self.events)
        if self.metrics is not None:
            self.metrics.watch_reachability(self.node_watch)
        self.node_watch.start()

    def start_fields(self, address: str, mode: str) -> dict:
        fields = {"address": address, "security": mode, "manifest": self._manifest.path.name,
                  "nodes": list(self._nodes)}
        if self.metrics is not None:
            fields["metrics_port"] = self.metrics.port
        if self.publisher is not None:
            fields["mqtt"] = f"{self.publisher.broker.host}:{self.publisher.broker.port}/{self.publisher.broker.topic}"
        return fields

    async def aclose(self) -> None:
        if self.node_watch is not None:
            await self.node_watch.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.publisher is not None:
            self.publisher.close()
        if self.metrics is not None:
            self.metrics.close()
