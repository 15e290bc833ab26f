"""`nonn bench` on the command line: user errors in one line (exit 2), and the run-directory form."""

from __future__ import annotations

import json
import shutil

import pytest

from nonn.cli import main


@pytest.mark.parametrize("args, words", [
    ([], "RUN_DIR"),
    (["some/run", "--teacher-arch", "wrn-16-4"], "not both"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--link", "carrier-pigeon"], "unknown link"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--device", "toaster"], "unknown device"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--input", "8x8"], "CxHxW"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--requests", "0"], "--requests"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--k", "2,x"], "--k"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--k", "2,0"], "--k"),
    (["some/run", "--k", "2,4"], "architecture form"),
])
def test_user_errors_are_one_line(capsys, args, words):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and "\n" not in err


@pytest.mark.slow
def test_run_directory_form_trains_the_compressed_baseline(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("logs", "deploy.json", "bench*"))
    assert main(["bench", str(run), "--requests", "3", "--warmup", "0", "--shaping", "in-process"]) == 0
    assert "link shaping: in-process" in capsys.readouterr().out
    result = json.loads((run / "bench.json").read_text())
    assert result["untrained"] is False and result["config"]["form"] == "run"
    compressed = result["models"]["compressed"]
    assert compressed["trained"] and compressed["accuracy"] is not None
    nonn = result["models"]["nonn"]
    assert compressed["params"] <= nonn["students_params_total"] + nonn["head"]["params"]
    assert (run / "bench" / "compressed-run" / "students.pt").exists()
    assert result["models"]["teacher"]["accuracy"] is not None
    # the int8 students' test accuracy beside the float32 one, both in ONNX Runtime
    assert 0 <= nonn["accuracy_int8"] <= 1 and 0 <= nonn["accuracy_fp32_onnx"] <= 1
    assert nonn["int8"]["calibration"]["split"] == "validation"
