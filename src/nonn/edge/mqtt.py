"""Predictions on MQTT (`gateway --mqtt mqtt://HOST:PORT/TOPIC`): one small JSON message per
answered image, best-effort. The serving loop only takes the few fields of the message and
appends them to a bounded queue; a thread of its own encodes them and hands them to paho-mqtt,
whose thread talks to the broker. A full queue or a broker that is down drops the message there
and counts it, so a broker that is slow or down never holds a classification."""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from nonn.edge.errors import EdgeError

DEFAULT_QUEUE = 1000


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    topic: str
    tls: bool


def parse_url(url: str) -> BrokerURL:
    """mqtt://HOST[:PORT]/TOPIC (1883) or mqtts://HOST[:PORT]/TOPIC (TLS, 8883)."""
    fix = "pass --mqtt mqtt://HOST:PORT/TOPIC (mqtts:// for TLS)"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise EdgeError(f"--mqtt {url!r} is not an MQTT URL; {fix}")
    topic = unquote(parts.path.lstrip("/"))
    if not topic or any(c in topic for c in "#+"):
        raise EdgeError(f"--mqtt {url!r} names no topic to publish to (wildcards are not one); {fix}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise EdgeError(f"--mqtt {url!r} has an invalid port; {fix}") from None
    return BrokerURL(parts.hostname, port, topic, parts.scheme == "mqtts")


def fields(prediction, started: float) -> tuple:
    """What one answered image's message says, taken on the serving loop (cheap: no encoding)."""
    label = prediction.label
    probability = float(prediction.probabilities[label]) if len(prediction.probabilities) > label else None
    return (label, prediction.class_name, probability, prediction.degraded,
            (time.perf_counter() - started) * 1000.0, time.time())


def message(values: tuple) -> bytes:
    """The JSON of one answered image: label, class name, probability, degraded, latency, time."""
    label, class_name, probability, degraded, latency_ms, timestamp = values
    return json.dumps({
        "label": label,
        "class_name": class_name,
        "probability": None if probability is None else round(probability, 6),
        "degraded": degraded,
        "latency_ms": round(latency_ms, 3),
        "timestamp": round(timestamp, 6),
    }, separators=(",", ":")).encode()


class Publisher:
    """Publishes each answered image's message to one topic; `dropped` counts what the queue or
    a disconnected broker lost, `published` what paho accepted."""

    def __init__(self, url: str, *, user: str | None = None, password_file: str | None = None,
                 ca: str | None = None, cert: str | None = None, key: str | None = None,
                 queue_size: int = DEFAULT_QUEUE, qos: int = 0, events=None):
        try:
            import paho.mqtt.client as paho
        except ImportError:
            raise EdgeError("--mqtt needs paho-mqtt; pip install paho-mqtt (or nonn-edge[mqtt])") from None
        if queue_size < 1:
            raise EdgeError(f"--mqtt-queue must be at least 1, got {queue_size}")
        self.broker = parse_url(url)
        self.dropped = 0  # counted under _count: the serving loop and the publishing thread both drop
        self.published = 0
        self._count = threading.Lock()
        self._pending: collections.deque = collections.deque()  # appended on the loop, taken by the thread
        self._limit = queue_size
        self._wake = threading.Event()
        self._qos = qos
        self._events = events
        self._connected = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"nonn-gateway-{os.getpid()}")
        if user:
            password = None
            if password_file:
                try:
                    password = open(password_file).read().strip()  # noqa: SIM115
                except OSError as exc:
                    raise EdgeError(f"cannot read --mqtt-password-file {password_file}: {exc.strerror}") from None
            client.username_pw_set(user, password)
        elif password_file:
            raise EdgeError("--mqtt-password-file needs --mqtt-user")
        if self.broker.tls or ca or cert:
            if bool(cert) != bool(key):
                raise EdgeError("an MQTT client certificate needs both --mqtt-cert and --mqtt-key")
            try:
                client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
            except (OSError, ValueError) as exc:
                raise EdgeError(f"cannot set up TLS to the MQTT broker: {exc}; check --mqtt-ca/--mqtt-cert") from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_queued_messages_set(queue_size)
        self._client = client
        self._thread = threading.Thread(target=self._drain, name="nonn-mqtt", daemon=True)
        self._stop = False

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()  # connects and reconnects on its own thread
        self._thread.start()

    def _on_connect(self, client, userdata, flags, reason, properties=None) -> None:
        if not reason.is_failure:
            self._connected.set()
            if self._events is not None:
                self._events.emit("mqtt_connected", f"publishing predictions to {self._where()}")
        elif self._events is not None:
            self._events.error(f"the MQTT broker {self._where()} refused the connection: {reason}")

    def _on_disconnect(self, client, userdata, flags, reason, properties=None) -> None:
        if self._connected.is_set() and self._events is not None:
            self._events.emit("mqtt_lost", f"lost the MQTT broker {self._where()}: {reason}", level="warning")
        self._connected.clear()

    def _where(self) -> str:
        return f"{self.broker.host}:{self.broker.port}/{self.broker.topic}"

    def offer(self, values: tuple) -> None:
        """Queue one message; never waits. With the broker down, or the queue full, it is dropped
        here, without waking the publishing thread."""
        if not self._connected.is_set() or len(self._pending) >= self._limit:
            self._drop()
            return
        self._pending.append(values)
        if not self._wake.is_set():
            self._wake.set()

    def _drop(self, n: int = 1) -> None:
        with self._count:
            self.dropped += n

    def answered(self, image, prediction, started: float) -> None:
        self.offer(fields(prediction, started))

    def refused(self, image, code: str, started: float, missing=()) -> None:
        pass

    def _drain(self) -> None:
        """Hand every waiting message to paho, then sleep until more come."""
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._pending:
                values = self._pending.popleft()
                if not self._connected.is_set():
                    self._drop()  # best-effort: nothing is kept for a broker that is down
                    continue
                info = self._client.publish(self.broker.topic, message(values), qos=self._qos)
                if info.rc == 0:
                    with self._count:
                        self.published += 1
                else:
                    self._drop()
            if self._stop:
                return

    def close(self, timeout_s: float = 2.0) -> None:
        """Hand over what is queued (within `timeout_s`), then disconnect."""
        if self._thread.is_alive():
            self._stop = True
            self._wake.set()
            self._thread.join(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()
