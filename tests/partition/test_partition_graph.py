"""Filter summaries and the filter graph W: hand-computed values, masking, streaming, memory."""

import gc
import weakref

import numpy as np
import pytest

from nonn.errors import PartitionError
from nonn.partition import (
    RULES,
    FilterGraphAccumulator,
    build_filter_graph,
    filter_summaries,
)

# Three filters, three images (spatial means):
#   x1 = [2, 1, 0.5]  -> /2 -> a = [1, 0.5, 0.25]
#   x2 = [1, 4, 2]    -> /4 -> a = [0.25, 1, 0.5]
#   x3 = [-1, 0, 0]   -> clamp -> all zero: stays zero, contributes nothing
X = np.array([[2.0, 1.0, 0.5], [1.0, 4.0, 2.0], [-1.0, 0.0, 0.0]])

# Activation-Hub, W_ij = sum_n a_i a_j |a_i - a_j|:
#   W01 = 1*0.5*0.5     + 0.25*1*0.75   = 0.25    + 0.1875  = 0.4375
#   W02 = 1*0.25*0.75   + 0.25*0.5*0.25 = 0.1875  + 0.03125 = 0.21875
#   W12 = 0.5*0.25*0.25 + 1*0.5*0.5     = 0.03125 + 0.25    = 0.28125
AH = np.array([[0.0, 0.4375, 0.21875], [0.4375, 0.0, 0.28125], [0.21875, 0.28125, 0.0]])

# Co-activation, W_ij = sum_n a_i a_j:
#   W01 = 0.5 + 0.25 = 0.75;  W02 = 0.25 + 0.125 = 0.375;  W12 = 0.125 + 0.5 = 0.625
COACT = np.array([[0.0, 0.75, 0.375], [0.75, 0.0, 0.625], [0.375, 0.625, 0.0]])

# top_k = 2: image 1 keeps filters 0, 1 -> [1, 0.5, 0]; image 2 keeps 1, 2 -> [0, 1, 0.5]
#   AH:    W01 = 1*0.5*0.5 = 0.25, W12 = 1*0.5*0.5 = 0.25, W02 = 0
#   coact: W01 = 0.5, W12 = 0.5, W02 = 0
AH_TOP2 = np.array([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]])
COACT_TOP2 = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])


def test_summaries_normalise_clamp_and_keep_zero_rows():
    a, keep = filter_summaries(X)
    np.testing.assert_array_equal(a, [[1.0, 0.5, 0.25], [0.25, 1.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(keep, [[True, True, True], [True, True, True], [False, False, False]])


def test_summaries_top_k_masks_the_smaller_values_and_breaks_ties_by_index():
    a, keep = filter_summaries(X, top_k=2)
    np.testing.assert_array_equal(a, [[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(keep, a > 0)
    a, _ = filter_summaries(np.array([[1.0, 1.0, 1.0, 0.5]]), top_k=2)
    np.testing.assert_array_equal(a, [[1.0, 1.0, 0.0, 0.0]])


def test_summaries_keep_top_k_per_row_on_random_data():
    x = np.random.default_rng(0).random((20, 80))
    a, keep = filter_summaries(x, top_k=50)
    assert keep.sum(axis=1).tolist() == [50] * 20
    np.testing.assert_allclose(a.max(axis=1), 1.0)
    # every kept value is at least every dropped one, per image
    for row, k in zip(x, keep):
        assert row[k].min() >= row[~k].max()


@pytest.mark.parametrize(
    ("rule", "top_k", "expected"), [("ah", 50, AH), ("coact", 50, COACT), ("ah", 2, AH_TOP2), ("coact", 2, COACT_TOP2)]
)
def test_hand_computed_graph(rule, top_k, expected):
    W = build_filter_graph(X, rule=rule, top_k=top_k)
    np.testing.assert_array_equal(W, expected)


def test_chunked_accumulation_equals_one_shot_and_images_are_counted():
    x = np.random.default_rng(1).gamma(1.0, 1.0, size=(101, 64))
    for rule in RULES:
        one = FilterGraphAccumulator(64, rule=rule, top_k=10)
        one.update(x)
        chunked = FilterGraphAccumulator(64, rule=rule, top_k=10)
        for s in range(0, 101, 7):
            chunked.update(x[s : s + 7])
        assert one.images == chunked.images == 101
        np.testing.assert_allclose(chunked.result(), one.result(), rtol=1e-12, atol=0)
        np.testing.assert_allclose(build_filter_graph(x, rule=rule, top_k=10, batch_size=13), one.result(), rtol=1e-12)
        # an iterable of batches works too
        np.testing.assert_allclose(
            build_filter_graph(iter([x[:50], x[50:]]), rule=rule, top_k=10), one.result(), rtol=1e-12
        )


def test_sparse_and_dense_paths_agree_with_a_direct_loop():
    x = np.random.default_rng(2).random((30, 12))
    for top_k in (4, 12):
        a, _ = filter_summaries(x, top_k=top_k)
        expected = np.zeros((12, 12))
        for row in a:
            for i in range(12):
                for j in range(12):
                    if i != j:
                        expected[i, j] += row[i] * row[j] * abs(row[i] - row[j])
        np.testing.assert_allclose(build_filter_graph(x, top_k=top_k), expected, rtol=1e-12)


def test_result_is_symmetric_with_zero_diagonal():
    W = build_filter_graph(np.random.default_rng(3).random((40, 30)), rule="coact", top_k=5)
    np.testing.assert_array_equal(W, W.T)
    np.testing.assert_array_equal(np.diag(W), 0.0)
    assert W.dtype == np.float64 and W.shape == (30, 30)


def test_accumulator_keeps_neither_the_inputs_nor_more_memory_per_batch():
    acc = FilterGraphAccumulator(16, rule="ah", top_k=4)
    sizes = []
    for seed in range(5):
        batch = np.random.default_rng(seed).random((500, 16))
        ref = weakref.ref(batch)
        acc.update(batch)
        del batch
        gc.collect()
        assert ref() is None, "the accumulator kept a reference to its input batch"
        held = sum(v.nbytes for v in vars(acc).values() if isinstance(v, np.ndarray))
        sizes.append(held)
    assert sizes == [16 * 16 * 8] * 5
    assert acc.images == 2500


def test_errors():
    with pytest.raises(PartitionError, match="choose one of: ah, coact"):
        FilterGraphAccumulator(3, rule="hub")
    with pytest.raises(PartitionError, match="top_k"):
        filter_summaries(X, top_k=0)
    with pytest.raises(PartitionError, match=r"expected \(B, 4\)"):
        FilterGraphAccumulator(4).update(X)
    with pytest.raises(PartitionError, match="N×C"):
        build_filter_graph(np.zeros((2, 3, 4)))
    with pytest.raises(PartitionError, match="no images"):
        build_filter_graph(np.zeros((0, 3)))
    with pytest.raises(PartitionError, match="NaN"):
        build_filter_graph(np.array([[1.0, np.nan]]))
