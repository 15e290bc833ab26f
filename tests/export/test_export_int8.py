"""`nonn export --int8`: int8 students beside the fp32 export, calibrated on validation, checked against fp32."""

import json
import shutil

import numpy as np
import onnx
import pytest

from nonn.cli import main
from nonn.edge.manifest import load_manifest
from nonn.edge.pixels import Normalisation
from nonn.quantize import QuantizationError, calibration_sample, compare_int8, initializer_bytes


@pytest.fixture(scope="module")
def int8_run(tiny_run, tmp_path_factory):
    """A copy of the shared tiny run (which other tests read as it is), exported to int8."""
    run = tmp_path_factory.mktemp("int8") / "run"
    shutil.copytree(tiny_run, run)
    assert main(["export", str(run), "--int8", "--calibration-images", "50"]) == 0
    return run


def test_int8_students_are_quantized_and_recorded(int8_run):
    fp32 = load_manifest(int8_run / "onnx" / "manifest.json")
    int8 = load_manifest(int8_run / "onnx-int8" / "manifest.json")  # verifies every SHA-256
    q = int8.quantization
    assert q["calibration"]["split"] == "validation" and q["calibration"]["method"] == "minmax"
    assert 1 <= q["calibration"]["images"] <= 50 and q["calibration"]["images"] <= q["calibration"]["of"]
    check = q["check"]
    assert check["max_drop_points"] == 0.5
    assert check["fp32_accuracy"] - check["int8_accuracy"] <= 0.5
    assert 0.0 <= check["label_agreement"] <= 1.0 and check["max_abs_logit_change"] >= 0.0
    assert int8.partition_sizes == fp32.partition_sizes and int8.head_sha256 == fp32.head_sha256
    for s8, s32 in zip(int8.students, fp32.students):
        model = onnx.load(str(s8.file))
        ops = {n.op_type for n in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert int8_weights, "no int8 weights in the quantized student"
        # the node takes uint8 pixels: the normalisation travels with the int8 model too
        meta = {p.key: p.value for p in model.metadata_props}
        assert Normalisation.from_metadata(meta) is not None
        assert initializer_bytes(s8.file) < initializer_bytes(s32.file) / 2


def test_int8_export_is_skipped_when_up_to_date_and_redone_when_settings_change(int8_run, capsys):
    path = int8_run / "onnx-int8" / "manifest.json"
    before = path.stat().st_mtime_ns
    assert main(["export", str(int8_run), "--int8", "--calibration-images", "50"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == before
    assert main(["export", str(int8_run), "--int8", "--calibration-images", "20"]) == 0
    assert json.loads(path.read_text())["quantization"]["calibration"]["images"] == 20


def test_calibration_sample_is_seeded_and_bounded():
    a, b = calibration_sample(100, 30, 7), calibration_sample(100, 30, 7)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 30 and a.max() < 100
    assert len(calibration_sample(10, 30, 0)) == 10
    with pytest.raises(QuantizationError, match="val_fraction"):
        calibration_sample(0, 30, 0)


def test_accuracy_drop_beyond_the_bound_fails_with_the_fix(int8_run, tmp_path):
    """A NoNN whose head is negated loses nearly all accuracy: the check must refuse it."""
    import dataclasses

    from onnx import numpy_helper

    from nonn.rundir import RunDir
    from nonn.stages.common import batch_prep, dataset_for

    fp32 = load_manifest(int8_run / "onnx" / "manifest.json")
    head = onnx.load(str(fp32.head_file))
    for t in head.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
    bad_head = tmp_path / "head.onnx"
    onnx.save(head, str(bad_head))
    bad = dataclasses.replace(fp32, head_file=bad_head)
    cfg = RunDir(int8_run).load_config()
    ds = dataset_for(cfg)
    batches = [(batch_prep(ds, cfg)(ds.test.x).numpy(), ds.test.y.numpy())]
    report = compare_int8(fp32, fp32, batches)  # a model against itself: nothing changes
    assert report["drop_points"] == 0 and report["label_agreement"] == 1.0
    with pytest.raises(QuantizationError, match="--max-drop"):
        compare_int8(fp32, bad, batches)
    assert compare_int8(fp32, bad, batches, max_drop_points=100.0)["drop_points"] > 0.5


def test_bad_int8_settings_are_one_line_errors(int8_run, capsys):
    assert main(["export", str(int8_run), "--int8", "--calibration-images", "0"]) == 2
    assert "--calibration-images" in capsys.readouterr().err
    assert main(["export", str(int8_run), "--int8", "--max-drop", "-1"]) == 2
    assert "--max-drop" in capsys.readouterr().err
