"""Property-based fuzz of node and gateway processes, unary and streaming (hypothesis).

Every call answers within its deadline with OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED or
DEADLINE_EXCEEDED (the gateway's); a stream that ends OK has answered every request it read;
health is SERVING afterwards. About 500 cases in the default suite, 10,000 under
`make test-slow` (NONN_FUZZ_EXAMPLES overrides both). NONN_FUZZ_REPORT=FILE appends a JSON
summary line (cases, failures, hung) per run."""

import json
import os
import time
from collections import Counter

import grpc
import numpy as np
import pytest
from edge_support import SHAPE
from grpc_health.v1 import health_pb2, health_pb2_grpc

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nonn.edge import nonn_pb2 as pb  # noqa: E402

OK_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.DEADLINE_EXCEEDED}
OK_VALUES = {code.value[0] for code in OK_CODES}
TIMEOUT_S = 5.0  # each call's; the gateway's deadline is 2 s
SLACK_S = 1.0
DTYPES = ["float32", "uint8", "float16", "int64", "float64", "", "bogus"]
LAYOUTS = ["", "HWC", "CHW", "HW", "NCHW", "x"]

dims = st.integers(min_value=-2, max_value=70_000)
shapes = st.lists(dims, max_size=5) | st.lists(st.integers(0, 12), min_size=1, max_size=4)


@st.composite
def arrays(draw, exact_shapes):
    """(shape, dtype, data): well-formed arrays of plausible shapes, or random fields."""
    if draw(st.integers(0, 3)) > 0:  # mostly well-formed, so that the happy paths are fuzzed too
        shape = list(draw(st.sampled_from(exact_shapes)))
        if shape and shape[0] == -1:
            shape[0] = draw(st.integers(0, 70))
        dtype = draw(st.sampled_from(["float32", "uint8"]))
        itemsize = 4 if dtype == "float32" else 1
        size = int(np.prod(shape)) * itemsize
        if dtype == "float32":
            values = draw(st.sampled_from([0.0, 1.0, 17.5, 255.0, -1.0, 1e30, float("nan"), float("inf")]))
            data = np.full(int(np.prod(shape)), values, np.float32).tobytes()
        else:
            data = draw(st.binary(min_size=size, max_size=size)) if size <= 4096 else bytes(size)
        return shape, dtype, data
    return draw(shapes), draw(st.sampled_from(DTYPES)), draw(st.binary(max_size=512))


node_tensors = arrays([[-1, *SHAPE], [1, *SHAPE], [2, SHAPE[0], SHAPE[1]], [1, SHAPE[0], SHAPE[1], SHAPE[2] + 1]])
gateway_images = arrays([[SHAPE[1], SHAPE[2], SHAPE[0]], list(SHAPE), [SHAPE[1], SHAPE[2]], [SHAPE[1], SHAPE[2], 1],
                         [4, 4, 3]])
garbage = st.binary(min_size=1, max_size=64).filter(lambda b: b[0] in (0xff, 0x07, 0x0f))  # never decodes


def tensor_message(fields) -> bytes:
    shape, dtype, data = fields
    try:
        return pb.Tensor(shape=shape, dtype=dtype, data=data).SerializeToString()
    except ValueError:
        return b"\xff"


def image_message(fields, layout) -> pb.Image:
    shape, dtype, data = fields
    return pb.Image(shape=shape, dtype=dtype, data=data, layout=layout)


node_unary = st.tuples(st.just("node_unary"), node_tensors.map(tensor_message) | garbage)
gateway_unary = st.tuples(st.just("gateway_unary"),
                          st.builds(lambda f, l: image_message(f, l).SerializeToString(), gateway_images,
                                    st.sampled_from(LAYOUTS)) | garbage)
node_stream = st.tuples(st.just("node_stream"), st.lists(
    st.builds(lambda f, t: ("req", f, t), node_tensors, st.integers(0, 3_000_000)) | garbage.map(lambda g: ("raw", g)),
    min_size=1, max_size=4))
gateway_stream = st.tuples(st.just("gateway_stream"), st.lists(
    st.lists(st.builds(lambda f, l, t: (f, l, t), gateway_images, st.sampled_from(LAYOUTS), st.integers(0, 3_000_000)),
             min_size=1, max_size=3).map(lambda reqs: ("req", reqs)) | garbage.map(lambda g: ("raw", g)),
    min_size=1, max_size=3))
cases = st.one_of(node_unary, gateway_unary, node_stream, gateway_stream)


@pytest.fixture(scope="module")
def cluster(artifacts, tmp_path_factory):
    """Two node processes and a gateway process (torch blocked), plaintext on loopback."""
    from edge_support import Processes

    procs = Processes(tmp_path_factory.mktemp("fuzz"))
    try:
        nodes = [procs.node(model)[1] for model in artifacts.students]
        _, gateway = procs.start("gateway", "--manifest", str(artifacts.manifest), "--nodes", ",".join(nodes),
                                 "--listen", "127.0.0.1:0", "--insecure", "--deadline-ms", "2000")
        channels = {"node": grpc.insecure_channel(nodes[0]), "gateway": grpc.insecure_channel(gateway)}
        yield channels
        for channel in channels.values():
            channel.close()
    finally:
        procs.close()


class Tally:
    def __init__(self):
        self.cases, self.failures, self.hung = 0, [], 0
        self.codes = Counter()


def check(channels, case, tally: Tally) -> None:
    kind, payload = case
    tally.cases += 1
    start = time.monotonic()
    problems = []
    try:
        if kind in ("node_unary", "gateway_unary"):
            channel = channels["node" if kind == "node_unary" else "gateway"]
            method = "/nonn.v1.Student/Features" if kind == "node_unary" else "/nonn.v1.Gateway/Classify"
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            try:
                call(payload, timeout=TIMEOUT_S)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            tally.codes[f"{kind}:{code.name}"] += 1
            if code not in OK_CODES:
                problems.append(f"{kind} answered {code.name}")
        else:
            node = kind == "node_stream"
            if node:
                messages = [pb.FeaturesRequest(id=i + 1, tensor=pb.Tensor.FromString(tensor_message(item[1])),
                                               timeout_us=item[2]).SerializeToString()
                            if item[0] == "req" and tensor_message(item[1]) != b"\xff" else b"\xff"
                            for i, item in enumerate(payload)]
                ids = [[i + 1] for i in range(len(payload))]
                method, reply_type = "/nonn.v1.Student/FeaturesStream", pb.FeaturesReply
            else:
                messages, ids, next_id = [], [], 1
                for item in payload:
                    if item[0] == "raw":
                        messages.append(item[1])
                        ids.append([])
                        continue
                    requests = []
                    for fields, layout, timeout_us in item[1]:
                        requests.append(pb.ClassifyRequest(id=next_id, image=image_message(fields, layout),
                                                           timeout_us=timeout_us))
                        next_id += 1
                    messages.append(pb.ClassifyRequests(requests=requests).SerializeToString())
                    ids.append([r.id for r in requests])
                method, reply_type = "/nonn.v1.Gateway/ClassifyStream", pb.ClassifyReplies
            bad = next((i for i, m in enumerate(messages) if m in (b"\xff",) or _undecodable(m, node)), None)
            expected = {i for group in (ids if bad is None else ids[:bad]) for i in group}
            stream = channels["node" if node else "gateway"].stream_stream(
                method, request_serializer=None, response_deserializer=reply_type.FromString)
            answered, codes = [], []
            try:
                for reply in stream(iter(messages), timeout=TIMEOUT_S):
                    replies = [reply] if node else list(reply.replies)
                    answered += [r.id for r in replies]
                    codes += [r.code for r in replies]
                status = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                status = exc.code()
            tally.codes[f"{kind}:{status.name}"] += 1
            if status not in OK_CODES:
                problems.append(f"{kind} ended {status.name}")
            if status == grpc.StatusCode.OK and set(answered) != expected:
                problems.append(f"{kind} ended OK with {sorted(expected - set(answered))} unanswered")
            if bad is not None and status != grpc.StatusCode.INVALID_ARGUMENT:
                problems.append(f"{kind} ended {status.name} after an undecodable message")
            if not expected <= set(answered):
                problems.append(f"{kind} left {sorted(expected - set(answered))} unanswered")
            if any(c not in OK_VALUES for c in codes):
                problems.append(f"{kind} answered codes {sorted(set(codes) - OK_VALUES)}")
    finally:
        elapsed = time.monotonic() - start
        if elapsed > TIMEOUT_S - 0.5:  # nothing should wait for the caller's own timer
            tally.hung += 1
            problems.append(f"{kind} took {elapsed:.2f} s")
        if problems:
            tally.failures.append(problems)
    assert not problems, problems


def _undecodable(raw: bytes, node: bool) -> bool:
    try:
        (pb.FeaturesRequest if node else pb.ClassifyRequests).FromString(raw)
        return False
    except Exception:  # noqa: BLE001
        return True


def _run(cluster, examples: int) -> Tally:
    tally = Tally()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(cases)
    def fuzz(case):
        check(cluster, case, tally)

    try:
        fuzz()
    finally:
        report = {"cases": tally.cases, "failures": len(tally.failures), "hung": tally.hung,
                  "codes": dict(tally.codes)}
        print("fuzz:", json.dumps(report))
        if os.environ.get("NONN_FUZZ_REPORT"):
            with open(os.environ["NONN_FUZZ_REPORT"], "a") as f:
                f.write(json.dumps(report) + "\n")
    for channel in cluster.values():
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return tally


def test_fuzz_node_and_gateway(cluster):
    tally = _run(cluster, int(os.environ.get("NONN_FUZZ_EXAMPLES", 500)))
    assert tally.cases >= 1 and not tally.failures and not tally.hung


@pytest.mark.slow
def test_fuzz_node_and_gateway_10000(cluster):
    tally = _run(cluster, int(os.environ.get("NONN_FUZZ_EXAMPLES", 10_000)))
    assert tally.cases >= 1 and not tally.failures and not tally.hung
