"""The tensor codec: raw little-endian bytes, validated shape, dtype and finiteness."""

import numpy as np
import pytest

from nonn.edge import nonn_pb2 as pb
from nonn.edge.errors import EdgeError, TensorError
from nonn.edge.tensors import decode_array, from_tensor, to_tensor


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8", "int64"])
def test_round_trip_keeps_values_shape_and_dtype(dtype):
    array = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    message = pb.Tensor.FromString(to_tensor(array).SerializeToString())
    assert message.dtype == dtype and list(message.shape) == [2, 3, 4]
    back = from_tensor(message)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


def test_bytes_are_little_endian_and_raw():
    message = to_tensor(np.array([1.0], dtype=">f4"))  # big-endian input is converted
    assert message.data == np.array([1.0], dtype="<f4").tobytes()


def test_empty_and_scalar_tensors():
    assert from_tensor(to_tensor(np.zeros((0, 3), np.float32))).shape == (0, 3)
    assert from_tensor(to_tensor(np.float32(2.5))).shape == ()


@pytest.mark.parametrize("extra", [-4, -1, 1, 4])
def test_rejects_byte_length_that_does_not_match_shape(extra):
    data = np.zeros(6, np.float32).tobytes()
    data = data[:extra] if extra < 0 else data + b"\0" * extra
    with pytest.raises(TensorError, match=r"needs 24 bytes of data, got"):
        from_tensor(pb.Tensor(shape=[2, 3], dtype="float32", data=data))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_rejects_non_finite_floats(bad, dtype):
    with pytest.raises(TensorError, match="NaN or Inf"):
        from_tensor(to_tensor(np.array([1.0, bad], dtype=dtype)))


def test_rejects_unknown_dtype_names_and_disallowed_ones():
    with pytest.raises(TensorError, match="expected one of float32"):
        from_tensor(pb.Tensor(shape=[1], dtype="float64", data=b"\0" * 8))
    with pytest.raises(TensorError, match="expected one of uint8"):
        decode_array([1], "float32", b"\0" * 4, allowed=("uint8",))


def test_rejects_negative_dimensions_and_unsendable_arrays():
    with pytest.raises(TensorError, match="shape"):
        from_tensor(pb.Tensor(shape=[-1, 2], dtype="uint8", data=b""))
    with pytest.raises(TensorError, match="cannot be sent"):
        to_tensor(np.zeros(2, np.float64))


def test_tensor_error_is_an_edge_error():
    assert issubclass(TensorError, EdgeError)
