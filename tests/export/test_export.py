import json

import numpy as np
import onnxruntime as ort
import torch

from nonn.cli import main
from nonn.rundir import RunDir, file_sha256
from nonn.stages.common import batch_prep, dataset_for, load_students


def test_export_matches_pytorch_on_the_test_split(tiny_run, capsys):
    assert main(["export", str(tiny_run)]) == 0
    onnx_dir = tiny_run / "onnx"
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    assert [s["file"] for s in manifest["students"]] == ["student_0.onnx", "student_1.onnx"]
    for entry in [*manifest["students"], manifest["head"]]:
        assert file_sha256(onnx_dir / entry["file"]) == entry["sha256"]
    rd = RunDir(tiny_run)
    cfg = rd.load_config()
    ds = dataset_for(cfg)
    assert manifest["input"]["shape"] == list(ds.input_shape)
    assert manifest["normalization"]["mean"] == list(ds.mean)
    assert manifest["classes"] == list(ds.classes)
    net, ckpt = load_students(rd)
    assert manifest["partition_sizes"] == ckpt["partition_sizes"]

    x = batch_prep(ds, cfg)(ds.test.x)
    with torch.no_grad():
        ref_feats = [s(x).numpy() for s in net.students]
        ref_logits = net(x).numpy()
    feats = []
    for k, entry in enumerate(manifest["students"]):
        sess = ort.InferenceSession(str(onnx_dir / entry["file"]), providers=["CPUExecutionProvider"])
        f = sess.run(None, {"image": x.numpy()})[0]
        assert f.shape == (len(ds.test.y), entry["features"])
        # Pooled features are intermediate and can be large; float32 rounding makes them relative.
        np.testing.assert_allclose(f, ref_feats[k], rtol=1e-5, atol=1e-4)
        feats.append(f)
    head = ort.InferenceSession(str(onnx_dir / "head.onnx"), providers=["CPUExecutionProvider"])
    logits = head.run(None, {"features": np.concatenate(feats, 1)})[0]
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4)
    assert np.array_equal(logits.argmax(1), ref_logits.argmax(1))
    assert manifest["parity"]["max_abs_diff"] <= 1e-4


def test_export_of_a_run_without_students(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("data:\n  name: digits\n")
    assert main(["export", str(tmp_path)]) == 2
    assert "run `nonn students" in capsys.readouterr().err


def test_parity_error_says_labels_differ_when_only_labels_differ():
    import pytest

    from nonn.export import ExportError, compare_logits

    reference = np.array([[1.0, 1.0 + 2e-5], [0.0, 3.0]], dtype=np.float32)  # a near-tie in the first row
    flipped = reference.copy()
    flipped[0] = [1.0 + 2e-5, 1.0]
    with pytest.raises(ExportError, match=r"different labels for 1 of 2 images although their logits agree") as err:
        compare_logits(flipped, reference, atol=1e-4)
    assert ">" not in str(err.value)
    with pytest.raises(ExportError, match=r"max \|diff\| 1\.00e\+00 > 0\.0001"):
        compare_logits(reference + np.array([[0.0, 0.0], [0.0, 1.0]], dtype=np.float32), reference, atol=1e-4)
    assert compare_logits(reference, reference) == 0.0
