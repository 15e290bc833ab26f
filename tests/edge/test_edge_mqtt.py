"""`gateway --mqtt`: a real Debian mosquitto on loopback (TLS and a password) gets one message per
classified image; with the broker gone, classification goes on and the messages are counted dropped."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
from edge_support import IMAGE, free_port

from nonn.edge.client import GatewayClient

mqtt = pytest.importorskip("paho.mqtt.client")
TOPIC = "nonn/predictions"


def _mosquitto() -> str:
    if shutil.which("mosquitto") is None:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "mosquitto"], capture_output=True, check=False,
                       timeout=600)
    path = shutil.which("mosquitto") or (shutil.which("mosquitto", path="/usr/sbin:/sbin"))
    if path is None:
        pytest.skip("the Debian package mosquitto is not installed and apt-get could not install it")
    return path


@pytest.fixture
def broker(tmp_path, pki):
    """mosquitto on 127.0.0.1 over TLS (the test CA's gateway certificate), user nonn / password."""
    binary = _mosquitto()
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    (tmp_path / "password").write_text("s3cret\n")
    subprocess.run([passwd, "-b", "-c", str(tmp_path / "passwd"), "nonn", "s3cret"], check=True, timeout=30)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
                    f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'gateway.pem'}\nkeyfile {pki / 'gateway.key'}\n"
                    "persistence false\nuser root\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"mosquitto did not start: {proc.stderr.read().decode()[-1000:]}") from None
            time.sleep(0.1)
    try:
        yield proc, port, tmp_path / "password"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


class Subscriber:
    def __init__(self, port: int, pki):
        self.messages: list[dict] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set("nonn", "s3cret")
        self.client.tls_set(ca_certs=str(pki / "ca.pem"))
        self.client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=0)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber could not subscribe"

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # and nothing more comes
        return list(self.messages)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_one_message_per_image_and_none_held_by_a_dead_broker(processes, shared_nodes, artifacts, broker, pki):
    from test_edge_metrics import moved, scrape

    proc, port, password = broker
    gateway, address = processes.start(
        "gateway", "--manifest", str(artifacts.manifest), "--nodes", ",".join(shared_nodes), "--listen",
        "127.0.0.1:0", "--insecure", "--deadline-ms", "3000", "--log-format", "json",
        "--metrics-listen", "127.0.0.1:0", "--mqtt", f"mqtts://127.0.0.1:{port}/{TOPIC}", "--mqtt-ca",
        str(pki / "ca.pem"), "--mqtt-user", "nonn", "--mqtt-password-file", str(password))
    assert gateway.start_event["mqtt"] == f"127.0.0.1:{port}/{TOPIC}"
    subscriber = Subscriber(port, pki)
    try:
        time.sleep(1.0)  # the gateway connects to the broker on its own thread
        rng = np.random.default_rng(5)
        images = [rng.integers(0, 256, IMAGE.shape, dtype=np.uint8) for _ in range(6)]
        with GatewayClient(address, insecure=True) as client:
            results = [client.classify(image) for image in images]
        got = subscriber.wait_for(len(images))
        assert len(got) == len(images)
        assert [m["label"] for m in got] == [r["label"] for r in results]
        for m, r in zip(got, results):
            assert m["class_name"] == r["class_name"] and m["degraded"] is False
            assert m["probability"] == pytest.approx(r["probabilities"][r["label"]], abs=1e-5)
            assert 0 < m["latency_ms"] < 5000 and abs(m["timestamp"] - time.time()) < 60
    finally:
        subscriber.close()

    proc.kill()  # the broker goes away: classification must not wait for it
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    with GatewayClient(address, insecure=True) as client:
        while moved({}, scrape(gateway), "nonn_gateway_mqtt_messages", outcome="dropped") == 0:
            assert time.monotonic() < deadline, "the gateway never noticed that the broker is gone"
            client.classify(IMAGE)  # may still go into the dead connection until paho notices
            time.sleep(0.2)
    before = scrape(gateway)
    with GatewayClient(address, insecure=True) as client:
        start = time.perf_counter()
        for _ in range(10):
            assert not client.classify(IMAGE)["degraded"]
        elapsed = time.perf_counter() - start
    time.sleep(0.3)
    after = scrape(gateway)
    assert moved(before, after, "nonn_gateway_mqtt_messages", outcome="dropped") == 10
    assert moved(before, after, "nonn_gateway_mqtt_messages", outcome="published") == 0
    assert elapsed < 10.0  # nothing waited on the broker (its reconnect delay alone is 1 s)
