"""partition.json and filter_graph.npz round trips and failures; the partition PNG."""

import sys

import numpy as np
import pytest

from nonn.errors import PartitionError
from nonn.partition import (
    load_filter_graph,
    load_partition,
    partition_filters,
    plot_partition,
    random_partition,
    save_filter_graph,
    save_partition,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def graph(c=32, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.random((c, c)) * (rng.random((c, c)) < 0.3)
    w = np.triu(w, 1)
    return w + w.T


def test_partition_json_round_trip(tmp_path):
    p = partition_filters(graph(), 3, threshold_percentile=90)
    p.rule = "ah"
    target = save_partition(tmp_path / "partition.json", p)
    assert target.read_text().startswith("{")
    assert load_partition(target) == p
    assert load_partition(tmp_path) == p  # a run directory stands for its partition.json
    assert [f.name for f in tmp_path.iterdir()] == ["partition.json"]  # no temporary left behind
    control = random_partition(32, 3)
    save_partition(tmp_path, control)
    assert load_partition(tmp_path) == control


def test_load_partition_failures_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "partition.json"
    with pytest.raises(PartitionError, match=r"partition\.json does not exist; rerun `nonn partition RUN_DIR`"):
        load_partition(missing)
    missing.write_text("{not json")
    with pytest.raises(
        PartitionError, match=r"partition\.json is unreadable or corrupt .*rerun `nonn partition RUN_DIR`"
    ):
        load_partition(missing)
    missing.write_text('{"groups": [[0, 1], [1]]}')
    with pytest.raises(PartitionError, match=r"partition\.json: .*exactly once.*rerun"):
        load_partition(missing)
    missing.write_text("[1, 2]")
    with pytest.raises(PartitionError, match="no 'groups'"):
        load_partition(missing)


def test_filter_graph_npz_round_trip(tmp_path):
    w = graph()
    target = save_filter_graph(
        tmp_path / "filter_graph.npz",
        w,
        rule="ah",
        top_k=50,
        images=1234,
        teacher_hash="abc123",
        percentiles=[90, 99],
        note=None,
    )
    assert target.name == "filter_graph.npz" and target.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["filter_graph.npz"]
    loaded, meta = load_filter_graph(tmp_path)
    np.testing.assert_array_equal(loaded, w)
    assert meta.pop("percentiles").tolist() == [90, 99]
    assert meta == {"rule": "ah", "top_k": 50, "images": 1234, "teacher_hash": "abc123"}
    assert isinstance(meta["rule"], str) and isinstance(meta["images"], int)


def test_load_filter_graph_failures(tmp_path):
    target = tmp_path / "filter_graph.npz"
    with pytest.raises(PartitionError, match=r"filter_graph\.npz does not exist; rerun `nonn partition RUN_DIR`"):
        load_filter_graph(target)
    target.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(PartitionError, match=r"filter_graph\.npz is unreadable or corrupt"):
        load_filter_graph(target)
    with target.open("wb") as fh:
        np.savez(fh, W=np.ones(3))
    with pytest.raises(PartitionError, match="no square W"):
        load_filter_graph(target)
    with pytest.raises(PartitionError, match="convert it first"):
        save_filter_graph(tmp_path / "g.npz", np.ones((2, 2)), bad={"a": 1})


def raw_rc_params():
    """rcParams as stored; reading rcParams["backend"] itself would resolve it by importing pyplot."""
    import matplotlib

    return {key: dict.__getitem__(matplotlib.rcParams, key) for key in matplotlib.rcParams}


def test_plot_writes_a_valid_png_without_touching_pyplot(tmp_path):
    import matplotlib
    import matplotlib.image

    pyplot_loaded = "matplotlib.pyplot" in sys.modules
    rc_before = raw_rc_params()
    w = graph(c=40)
    p = partition_filters(w, 3, threshold_percentile=90)
    target = plot_partition(tmp_path / "plots" / "partition.png", w, p)
    data = target.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = matplotlib.image.imread(target)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0  # something was drawn
    # global matplotlib state is untouched: no pyplot import, no backend or rcParams change
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_loaded
    assert raw_rc_params() == rc_before
    assert [f.name for f in target.parent.iterdir()] == ["partition.png"]
    # deterministic: the same inputs draw the same picture
    again = plot_partition(tmp_path / "again.png", w, p)
    np.testing.assert_array_equal(matplotlib.image.imread(again), image)


def test_plot_rejects_a_partition_of_another_graph(tmp_path):
    p = random_partition(10, 2)
    with pytest.raises(PartitionError, match="covers 10 filters but W has 40"):
        plot_partition(tmp_path / "x.png", graph(c=40), p)
