"""`nonn run --dataset fashion-mnist` on a machine with Debian's package and nothing else: no --data-dir, no network."""

from __future__ import annotations

import json

from nonn_test_support import debian_fashion_mnist, run_cli


def test_run_fashion_mnist_from_the_debian_package(tmp_path):
    debian_fashion_mnist()
    out = tmp_path / "run"
    env = {"HOME": str(tmp_path / "home"), "NONN_DATA_DIR": str(tmp_path / "empty-cache"),
           "NONN_DATA_MIRROR": "http://127.0.0.1:9"}  # nothing listens there: a download would fail
    proc = run_cli("run", "--dataset", "fashion-mnist", "--k", "2", "--out", str(out),
                   "--set", "data.limit_train=100", "--set", "data.val_fraction=0.01",
                   "--set", "teacher.arch=wrn-10-1", "--set", "teacher.epochs=1",
                   "--set", "students.arch=wrn-10-0.5", "--set", "students.epochs=1", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "fashion-mnist" and metrics["test_images"] == 10000 and metrics["k"] == 2
    assert not (tmp_path / "empty-cache").exists()
