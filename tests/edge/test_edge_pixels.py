"""uint8 pixels to the nodes: the normalisation travels in the student model, the node applies
it with the gateway's arithmetic, and a quarter of the bytes cross each link."""

import grpc
import numpy as np
import pytest
from edge_support import IMAGE, MEAN, SHAPE, SIZES, STD, reference

from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.client import classify, to_message
from nonn.edge.errors import EdgeError
from nonn.edge.gateway import GatewayServicer
from nonn.edge.manifest import load_manifest
from nonn.edge.pixels import Normalisation
from nonn.edge.tensors import from_tensor, to_tensor

TIMEOUT = 10.0


def _servicer(manifest):
    m = load_manifest(manifest)
    return GatewayServicer(m, ["127.0.0.1:9"] * len(m.students), deadline_s=1.0, degraded=False,
                           credentials=None, max_message_bytes=1 << 20, intra_op_threads=1)


def test_normalisation_round_trips_through_model_metadata():
    norm = Normalisation.of(255.0, MEAN, STD)
    back = Normalisation.from_metadata(norm.metadata())
    assert back.scale == norm.scale and back.channels == 3
    assert np.array_equal(back.mean, norm.mean) and np.array_equal(back.std, norm.std)
    assert Normalisation.from_metadata({}) is None
    broken = {**norm.metadata(), "nonn.pixel_std": "[0.2, -1, 0.3]"}
    with pytest.raises(EdgeError, match="re-export it with `nonn export`"):
        Normalisation.from_metadata(broken)


def test_node_side_normalisation_is_bit_identical_to_the_gateway_float_path(artifacts, pixel_artifacts):
    pixels = _servicer(pixel_artifacts.manifest).preprocess(to_message(IMAGE, "HWC"))
    floats = _servicer(artifacts.manifest).preprocess(to_message(IMAGE, "HWC"))
    assert pixels.dtype == np.uint8 and pixels.shape == (1, *SHAPE) and pixels.flags.c_contiguous
    assert floats.dtype == np.float32
    assert np.array_equal(Normalisation.of(255.0, MEAN, STD).apply(pixels), floats)


def test_a_gray_image_for_a_colour_model_still_travels_as_float(pixel_artifacts):
    """Channel conversion needs float arithmetic: the gateway normalises such images itself."""
    gray = IMAGE[:, :, 0]
    x = _servicer(pixel_artifacts.manifest).preprocess(to_message(gray, "HW"))
    assert x.dtype == np.float32 and x.shape == (1, *SHAPE)


def test_node_answers_uint8_pixels_exactly_as_the_normalised_floats(pixel_nodes, pixel_artifacts):
    batch = np.stack([IMAGE, IMAGE[::-1]]).transpose(0, 3, 1, 2).copy()  # [2, C, H, W] uint8
    floats = Normalisation.of(255.0, MEAN, STD).apply(batch)
    with grpc.insecure_channel(pixel_nodes[0]) as channel:
        stub = pb_grpc.StudentStub(channel)
        from_pixels = from_tensor(stub.Features(to_tensor(batch), timeout=TIMEOUT))
        from_floats = from_tensor(stub.Features(to_tensor(floats), timeout=TIMEOUT))
    assert from_pixels.shape == (2, SIZES[0])
    assert np.array_equal(from_pixels, from_floats)


def test_node_without_normalisation_refuses_pixels_naming_float32(shared_nodes):
    pixels = IMAGE.transpose(2, 0, 1)[None].copy()
    with grpc.insecure_channel(shared_nodes[0]) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.StudentStub(channel).Features(to_tensor(pixels), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensor dtype 'uint8' is not supported; expected one of float32" in info.value.details()


def test_gateway_sends_pixels_and_answers_like_onnxruntime(gateways, pixel_nodes, pixel_artifacts):
    address = gateways(pixel_artifacts.manifest, pixel_nodes, insecure=True)
    result = classify(address, IMAGE, insecure=True, timeout_s=TIMEOUT)
    np.testing.assert_allclose(result["logits"], reference(pixel_artifacts), atol=1e-5)
    pixels = int(np.prod(SHAPE))
    assert all(pixels < n["bytes_sent"] < 2 * pixels for n in result["nodes"])  # uint8 and a small header
