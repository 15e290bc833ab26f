"""Every user mistake: one line naming the fix, exit code 2, no traceback, nothing that looks complete."""


import pytest
import torch
from nonn_test_support import run_cli, tiny_args

from nonn.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["run", "--dataset", "cifar11"], "unknown dataset 'cifar11'"),
    (["run", "--k", "0"], "students.k must be at least 1"),
    (["run", "--set", "students.kk=1"], "unknown config key 'students.kk'"),
    (["run", "--set", "teacher.epochs=many"], "teacher.epochs must be an integer"),
    (["run", "--config", "/nonexistent/c.yaml"], "does not exist"),
    (["teacher", "/nonexistent/run"], "not a run directory"),
    (["run", "--set", "students.teacher_views=-1"], "students.teacher_views must be >= 0"),
])
def test_config_mistakes(args, needle, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "r")] if args[0] == "run" else args) == 2
    assert needle in _one_line_error(capsys)


@pytest.mark.parametrize("args,needle", [
    (["ablate", "--preset", "cifar-huge"], "unknown preset 'cifar-huge'; choose one of: fashion-mnist"),
    (["ablate", "--k", "1", "--variants", "ah,compressed"], "compressed baseline matches a NoNN of K > 1"),
])
def test_ablate_mistakes(args, needle, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert needle in _one_line_error(capsys)
    assert not (tmp_path / "a").exists()


def test_k_larger_than_filters(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--k", "129", "--out", str(out), *tiny_args()]) == 2
    line = _one_line_error(capsys)
    assert "students.k=129" in line and "1 <= k <= 128" in line
    assert (out / "teacher.pt").exists() and not (out / "partition.json").exists()


def test_bad_module_path(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "r"), *tiny_args("teacher.feature_module=group7")]) == 2
    assert "module path 'group7' is not in the teacher" in _one_line_error(capsys)


def test_missing_and_corrupt_checkpoints(tiny_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    (run / "students.pt").unlink()
    assert main(["evaluate", str(run)]) == 2
    assert "run `nonn students" in _one_line_error(capsys)
    (run / "teacher.pt").write_bytes(b"not a checkpoint")
    assert main(["partition", str(run), "--force"]) == 2
    assert "corrupt" in _one_line_error(capsys)
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"\x00garbage")
    assert main(["run", "--out", str(tmp_path / "u"), *tiny_args(f"teacher.weights={weights}")]) == 2
    assert "corrupt or not a state_dict" in _one_line_error(capsys)
    torch.save({"fc.weight": torch.zeros(3, 3)}, weights)
    assert main(["run", "--out", str(tmp_path / "u"), *tiny_args(f"teacher.weights={weights}")]) == 2
    assert "do not fit teacher.arch" in _one_line_error(capsys)
    assert main(["run", "--out", str(tmp_path / "u"), *tiny_args("teacher.weights=/nope.pt")]) == 2
    assert "do not exist" in _one_line_error(capsys)


def test_real_command_exit_code_and_single_line():
    proc = run_cli("run", "--dataset", "imagenet-21k", "--out", "/tmp/nonn-never-written")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "choose one of" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_killed_stage_leaves_no_complete_looking_artifact(tmp_path):
    """Kill a run mid-training: no teacher.pt appears, only (at most) a temporary file."""
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nonn.cli", "run", "--out", str(out),
                             *tiny_args("teacher.epochs=200")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "config.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # inside the teacher's fit by now
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / "config.yaml").exists()
    assert not (out / "teacher.pt").exists()
    assert main(["evaluate", str(out)]) == 2
