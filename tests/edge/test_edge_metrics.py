"""Operations of real node and gateway processes: Prometheus counters that move by exactly the
requests sent, JSON event logs, and gateway health that follows the nodes' reachability."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import grpc
import numpy as np
import pytest
from edge_support import IMAGE

from nonn.edge.client import GatewayClient, to_message

pytest.importorskip("prometheus_client")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

JSON_LOGS = ("--log-format", "json", "--metrics-listen", "127.0.0.1:0")
ANY_PORT = ("--listen", "127.0.0.1:0")


def scrape(proc) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from the process's metrics endpoint."""
    url = f"http://127.0.0.1:{proc.start_event['metrics_port']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def moved(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def wait_for_health(address: str, status: int, timeout_s: float = 15.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if health(address) == status:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"gateway health stayed {health(address)}, expected {status} within {timeout_s} s")


def events(proc) -> list[dict]:
    """The JSON events a stopped process wrote after its start line."""
    return [json.loads(line) for line in proc.stdout.read().decode().splitlines() if line.startswith("{")]


def test_counters_move_by_exactly_the_requests_sent(processes, artifacts):
    nodes = [processes.node(model, *JSON_LOGS) for model in artifacts.students]
    gateway, address = processes.start("gateway", "--manifest", str(artifacts.manifest), "--nodes",
                                       ",".join(a for _, a in nodes), "--insecure", "--deadline-ms", "3000", *ANY_PORT,
                                       *JSON_LOGS)
    info = scrape(gateway)
    head_sha = json.loads(artifacts.manifest.read_text())["head"]["sha256"]
    assert any(name == "nonn_model_info" and dict(labels).get("sha256") == head_sha for name, labels in info)
    node_info = scrape(nodes[0][0])
    student_sha = json.loads(artifacts.manifest.read_text())["students"][0]["sha256"]
    assert any(name == "nonn_model_info" and dict(labels).get("sha256") == student_sha for name, labels in node_info)

    rng = np.random.default_rng(3)
    good = [rng.integers(0, 256, IMAGE.shape, dtype=np.uint8) for _ in range(7)]
    bad = [np.zeros((5, 5, 3), np.uint8)] * 2
    with GatewayClient(address, insecure=True) as client:
        client.classify(IMAGE)  # connects the links; not part of the batch
        before = [scrape(gateway)] + [scrape(p) for p, _ in nodes]
        results = [client.classify(image) for image in good]
        for image in bad:
            with pytest.raises(Exception, match="INVALID_ARGUMENT"):
                client.classify(image)
    after = [scrape(gateway)] + [scrape(p) for p, _ in nodes]
    g0, g1 = before[0], after[0]
    assert moved(g0, g1, "nonn_gateway_requests_total", code="OK") == 7
    assert moved(g0, g1, "nonn_gateway_requests_total", code="INVALID_ARGUMENT") == 2
    assert moved(g0, g1, "nonn_gateway_request_seconds_count") == 9
    assert moved(g0, g1, "nonn_gateway_degraded_total") == 0
    client_bytes = sum(to_message(image, "").ByteSize() for image in good + bad)
    assert moved(g0, g1, "nonn_gateway_received_bytes_total", peer="client") == client_bytes
    assert moved(g0, g1, "nonn_gateway_sent_bytes_total", peer="nodes") == sum(r["bytes_sent"] for r in results)
    assert moved(g0, g1, "nonn_gateway_node_batch_size_sum") == 7 * len(nodes)
    for k, ((b, a), (proc, _)) in enumerate(zip(zip(before[1:], after[1:]), nodes)):
        assert moved(b, a, "nonn_node_batch_size_sum") == 7  # images, however the gateway batched them
        messages = moved(b, a, "nonn_node_requests_total", code="OK")
        assert messages == moved(b, a, "nonn_node_batch_size_count") == moved(b, a, "nonn_node_compute_seconds_count")
        assert 1 <= messages <= 7
        assert moved(b, a, "nonn_node_received_bytes_total") == sum(r["nodes"][k]["bytes_sent"] for r in results)
        assert moved(b, a, "nonn_node_sent_bytes_total") == sum(r["nodes"][k]["bytes_received"] for r in results)
        assert moved(b, a, "nonn_node_requests_total", code="INVALID_ARGUMENT") == 0
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(timeout=15) == 0
    assert [e["event"] for e in events(gateway)][-1] == "stop"


def test_health_follows_a_killed_node_and_its_return(processes, artifacts):
    nodes = [processes.node(model, "--log-format", "json") for model in artifacts.students]
    addresses = [a for _, a in nodes]
    args = ["--manifest", str(artifacts.manifest), "--nodes", ",".join(addresses), "--insecure", *ANY_PORT, *JSON_LOGS]
    gateway, address = processes.start("gateway", *args)
    degraded, degraded_address = processes.start("gateway", *args, "--degraded")
    wait_for_health(address, health_pb2.HealthCheckResponse.SERVING)
    with GatewayClient(address, insecure=True) as client:
        client.classify(IMAGE)

    processes.kill(nodes[1][0])
    wait_for_health(address, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert health(degraded_address) == health_pb2.HealthCheckResponse.SERVING
    assert scrape(gateway)[("nonn_gateway_node_up", (("address", addresses[1]), ("node", "1")))] == 0
    for proc, where, degraded_answer in ((gateway, address, False), (degraded, degraded_address, True)):
        before = scrape(proc)
        with GatewayClient(where, insecure=True) as client:
            if degraded_answer:
                assert client.classify(IMAGE)["degraded"]
            else:
                with pytest.raises(Exception, match="UNAVAILABLE|DEADLINE_EXCEEDED"):
                    client.classify(IMAGE)
        after = scrape(proc)
        assert moved(before, after, "nonn_gateway_node_missing_total", address=addresses[1], node="1") == 1
        assert moved(before, after, "nonn_gateway_node_missing_total", address=addresses[0], node="0") == 0
        assert moved(before, after, "nonn_gateway_degraded_total") == int(degraded_answer)
        assert moved(before, after, "nonn_gateway_requests_total", code="OK") == int(degraded_answer)

    processes.node(artifacts.students[1], "--log-format", "json", listen=addresses[1])
    wait_for_health(address, health_pb2.HealthCheckResponse.SERVING)
    with GatewayClient(address, insecure=True) as client:
        assert not client.classify(IMAGE)["degraded"]
    for proc in (gateway, degraded):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    told = events(gateway)
    lost = [e for e in told if e["event"] == "node_lost"]
    back = [e for e in told if e["event"] == "node_back"]
    assert lost and lost[0]["node"] == 1 and lost[0]["address"] == addresses[1] and lost[0]["level"] == "warning"
    assert back and back[-1]["node"] == 1 and back[-1]["ts"] > lost[0]["ts"]
    assert all({"ts", "level", "role", "event", "message"} <= e.keys() and e["role"] == "gateway" for e in told)


def test_bad_operation_flags_are_one_line(artifacts):
    import subprocess
    import sys

    from edge_support import edge_env

    for flags, words in ((["--metrics-listen", "nowhere"], "--metrics-listen"),
                         (["--log-format", "xml"], "--log-format"),
                         (["--mqtt", "http://x/t"], "--mqtt")):
        result = subprocess.run([sys.executable, "-m", "nonn.edge", "gateway", "--manifest", str(artifacts.manifest),
                                 "--nodes", "127.0.0.1:1,127.0.0.1:2", "--insecure", *flags],
                                capture_output=True, text=True, timeout=60, env=edge_env())
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
