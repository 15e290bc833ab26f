"""A real `nonn run` killed with SIGKILL mid-stage resumes from its last completed epoch, in both training stages,
and ends with the weights an uninterrupted run gives (CPU, same seed)."""

import csv
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from nonn_test_support import REPO, tiny_args

from nonn.cli import main
from nonn.config import load_config
from nonn.pipeline import init_run, run_stage
from nonn.rundir import RunDir

EPOCHS = ("teacher.epochs=4", "students.epochs=3")


def _start(out):
    return _popen("run", "--dataset", "digits", "--k", "2", "--out", str(out), *tiny_args(*EPOCHS))


def _popen(*args):
    return subprocess.Popen([sys.executable, "-m", "nonn.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(*args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "nonn.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _assert_same_weights(a_path, b_path):
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    assert a["best_epoch"] == b["best_epoch"] and a["val_acc"] == b["val_acc"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), f"{a_path.name}: {key} differs"


def _config(*extra):
    return load_config(None, [item for item in tiny_args(*extra) if item != "--set"] + ["data.name=digits"])


def _kill_at(proc, line_start: str) -> list[str]:
    """Read the run's output until a line starting with `line_start`, then SIGKILL it; the lines seen."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(line_start):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    return seen


def _assert_resumed(stage: str, epochs: int, done: subprocess.CompletedProcess) -> int:
    """The rerun said it resumed and trained only the epochs after the checkpoint; how many were done before.

    The kill lands just after epoch 2's line, so epoch 2's checkpoint may or may not have been written."""
    match = re.search(rf"\[{stage}\] resuming after epoch (\d+)/{epochs} from \S+last.ckpt", done.stdout)
    assert match, done.stdout
    before = int(match.group(1))
    assert before in (1, 2)
    for e in range(1, epochs + 1):
        assert (f"[{stage}] epoch {e}/{epochs}:" in done.stdout) == (e > before), done.stdout[-3000:]
    return before


def _epochs_logged(path) -> list[int]:
    with open(path, newline="") as f:
        return [int(float(row["epoch"])) for row in csv.DictReader(f)]


def test_killed_teacher_stage_resumes_and_matches_an_uninterrupted_one(tmp_path):
    killed = init_run(tmp_path / "killed", _config("teacher.epochs=3")).path
    _kill_at(_popen("teacher", str(killed)), "[teacher] epoch 2/3")  # epoch 1 is checkpointed
    done = _finish("teacher", str(killed))
    _assert_resumed("teacher", 3, done)
    assert _epochs_logged(killed / "logs" / "teacher" / "metrics.csv") == [0, 1, 2]
    assert not (killed / "checkpoints").exists()
    whole = init_run(tmp_path / "whole", _config("teacher.epochs=3"))
    assert run_stage(whole, "teacher", log=lambda line: None)
    _assert_same_weights(killed / "teacher.pt", whole.path / "teacher.pt")


def test_killed_students_stage_resumes_with_cached_teacher_targets(tmp_path, tiny_run):
    """The students stage with the teacher's targets cached (teacher_views): the cache is rebuilt, the same."""
    runs = {}
    for name in ("killed", "whole"):
        runs[name] = tmp_path / name
        shutil.copytree(tiny_run, runs[name])
        cfg = _config("students.epochs=3", "students.teacher_views=2")
        assert cfg.students.resolved_teacher_views() == 2
        RunDir(runs[name]).save_config(cfg)
    killed = runs["killed"]
    _kill_at(_popen("students", str(killed)), "[students] epoch 2/3")
    done = _finish("students", str(killed))
    _assert_resumed("students", 3, done)
    assert _epochs_logged(killed / "logs" / "students" / "metrics.csv") == [0, 1, 2]
    assert run_stage(RunDir(runs["whole"]), "students", log=lambda line: None)
    _assert_same_weights(killed / "students.pt", runs["whole"] / "students.pt")


@pytest.mark.slow
def test_killed_run_resumes_each_stage_and_matches_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    # Killed during the teacher's 3rd epoch: epochs 1-2 are checkpointed.
    _kill_at(_start(killed), "[teacher] epoch 3/4")
    assert (killed / "checkpoints" / "teacher" / "last.ckpt").is_file()
    assert not (killed / "teacher.pt").exists()
    # Rerun: the teacher resumes (does not restart); killed again during the students' 2nd epoch.
    proc = _start(killed)
    seen = _kill_at(proc, "[students] epoch 2/3")
    text = "".join(seen)
    assert "[teacher] epoch 1/4:" not in text and "[teacher] epoch 2/4:" not in text, text
    assert "[teacher] epoch 4/4:" in text
    assert (killed / "teacher.pt").is_file() and not (killed / "checkpoints" / "teacher").exists()
    assert (killed / "checkpoints" / "students" / "last.ckpt").is_file()
    # Third time: it finishes.
    done = _finish("run", "--dataset", "digits", "--k", "2", "--out", str(killed), *tiny_args(*EPOCHS))
    assert "[teacher] " in done.stdout and "teacher.pt is up to date" in done.stdout
    _assert_resumed("students", 3, done)
    assert not (killed / "checkpoints").exists()  # removed once each stage finished
    assert (killed / "report.html").is_file()
    for stage, epochs in (("teacher", 4), ("students", 3)):
        assert _epochs_logged(killed / "logs" / stage / "metrics.csv") == list(range(epochs))
        assert (killed / "plots" / f"training_{stage}.png").is_file()

    # The same run uninterrupted (keeping its checkpoints, which must not change what it computes).
    whole = tmp_path / "whole"
    assert main(["run", "--dataset", "digits", "--k", "2", "--out", str(whole),
                 *tiny_args(*EPOCHS, "trainer.keep_checkpoints=true")]) == 0
    assert (whole / "checkpoints" / "students" / "last.ckpt").is_file()
    for name in ("teacher.pt", "students.pt"):
        _assert_same_weights(killed / name, whole / name)
