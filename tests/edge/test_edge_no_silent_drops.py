"""Nothing ends OK over unanswered requests: a message that does not decode ends a stream with
INVALID_ARGUMENT after every request before it is answered; an undecodable unary request is
INVALID_ARGUMENT without exception names; NaN features from finite input are never OK."""

import grpc
import numpy as np
import pytest
from edge_support import IMAGE, SHAPE
from onnx import TensorProto, helper

from nonn.edge import nonn_pb2 as pb
from nonn.edge.client import to_message
from nonn.edge.tensors import to_tensor

GARBAGE = b"\xff\xff\xff"
EXCEPTION_WORDS = ("Error", "Exception", "Traceback", "exception")


def no_exception_names(details: str) -> bool:
    return not any(word in (details or "") for word in EXCEPTION_WORDS)


def classify_requests(*ids):
    return pb.ClassifyRequests(requests=[pb.ClassifyRequest(id=i, image=to_message(IMAGE)) for i in ids]
                               ).SerializeToString()


def test_a_garbage_message_on_classify_stream_is_not_an_ok_over_unanswered_images(gateways, shared_nodes, artifacts):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True, deadline_s=5.0)
    with grpc.insecure_channel(address) as channel:
        stream = channel.stream_stream("/nonn.v1.Gateway/ClassifyStream", request_serializer=None,
                                       response_deserializer=pb.ClassifyReplies.FromString)
        answered = []
        with pytest.raises(grpc.RpcError) as info:
            for replies in stream(iter([classify_requests(1), GARBAGE, classify_requests(2, 3, 4, 5)]), timeout=20):
                answered += [reply.id for reply in replies.replies]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert answered == [1]  # image 1, sent before the garbage, is answered before the stream ends
    assert no_exception_names(info.value.details())


def test_a_garbage_message_on_features_stream_ends_it_invalid_argument(shared_nodes):
    request = pb.FeaturesRequest(id=1, tensor=to_tensor(np.zeros((1, *SHAPE), np.float32))).SerializeToString()
    with grpc.insecure_channel(shared_nodes[0]) as channel:
        stream = channel.stream_stream("/nonn.v1.Student/FeaturesStream", request_serializer=None,
                                       response_deserializer=pb.FeaturesReply.FromString)
        answered = []
        with pytest.raises(grpc.RpcError) as info:
            for reply in stream(iter([request, GARBAGE, request]), timeout=20):
                answered.append((reply.id, reply.code))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert answered == [(1, 0)]


@pytest.mark.parametrize("method", ["/nonn.v1.Gateway/Classify", "/nonn.v1.Student/Features"])
def test_undecodable_unary_requests_are_invalid_argument(gateways, shared_nodes, artifacts, method):
    address = gateways(artifacts.manifest, shared_nodes, insecure=True) if "Gateway" in method else shared_nodes[0]
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(GARBAGE, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert no_exception_names(info.value.details())


def _nan_student(path):
    """A student whose features are sqrt(-1 - |mean pixel|): NaN from any finite input."""
    c = SHAPE[0]
    minus_one = helper.make_tensor("m1", TensorProto.FLOAT, [1], [-1.0])
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pool"]),
         helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
         helper.make_node("Abs", ["flat"], ["abs"]),
         helper.make_node("Sub", ["m1", "abs"], ["negative"]),
         helper.make_node("Sqrt", ["negative"], ["features"])],
        "nan_student", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", c])], [minus_one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_nan_features_from_finite_input_are_never_ok(tmp_path):
    from nonn.edge import nonn_pb2_grpc as pb_grpc
    from nonn.edge.node import serve_node

    server, port = serve_node(_nan_student(tmp_path / "nan.onnx"), insecure=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.StudentStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Features(to_tensor(np.ones((2, *SHAPE), np.float32)), timeout=10)
            assert info.value.code() == grpc.StatusCode.INTERNAL and "NaN" in info.value.details()
            with pytest.raises(grpc.RpcError) as info:  # NaN in: the caller's fault
                stub.Features(to_tensor(np.full((1, *SHAPE), np.nan, np.float32)), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            replies = list(stub.FeaturesStream(iter([pb.FeaturesRequest(id=9, tensor=to_tensor(
                np.ones((1, *SHAPE), np.float32)))]), timeout=10))
            assert [(r.id, r.code) for r in replies] == [(9, grpc.StatusCode.INTERNAL.value[0])]
    finally:
        server.stop(0)
