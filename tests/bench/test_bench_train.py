"""`nonn bench-train`: both student paths and the teacher stage measured in one run, on a tiny configuration."""

from __future__ import annotations

import json

from nonn.cli import main


def test_bench_train_reports_old_and_new_paths(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench-train", "--dataset", "digits", "--set", "data.limit_train=100", "--set", "teacher.arch=wrn-10-1",
                 "--set", "students.arch=wrn-10-0.5", "--set", "students.epochs=8", "--batches", "1", "--rounds", "2",
                 "--out", str(out)]) == 0
    result = json.loads((out / "bench_train.json").read_text())
    assert result["config"]["teacher_views"] == 2 and result["config"]["epochs"] == 8  # auto: a quarter of the epochs
    for name in ("teacher_stage", "students_old", "students_new_epoch", "cache_build", "students_new_stage"):
        assert result["img_per_s"][name] > 0
        assert name == "students_new_stage" or len(result["rounds"][
            {"teacher_stage": "teacher", "students_old": "old", "students_new_epoch": "new", "cache_build": "build"}[name]]) == 2
    # The whole stage pays for the cache, so it is never faster than an epoch that reads it.
    assert result["img_per_s"]["students_new_stage"] <= result["img_per_s"]["students_new_epoch"]
    assert result["speedup"]["stage"] <= result["speedup"]["epoch"]
    assert "Speed-up of the student stage" in capsys.readouterr().out
    assert (out / "bench_train.md").read_text().startswith("digits 1x8x8")
