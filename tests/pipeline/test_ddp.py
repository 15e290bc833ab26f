"""Two-process DDP on CPU (gloo) through configuration alone gives the same kind of run as one process."""

import json

import pytest
import torch
from nonn_test_support import run_cli, tiny_args


def test_two_process_ddp_on_cpu(tmp_path, tiny_run):
    out = tmp_path / "ddp"
    proc = run_cli("run", "--dataset", "digits", "--k", "2", "--out", str(out),
                   *tiny_args("trainer.devices=2", "trainer.strategy=ddp"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("teacher.pt", "students.pt"):
        ddp = torch.load(out / name, weights_only=True)
        single = torch.load(tiny_run / name, weights_only=True)
        assert ddp["world_size"] == 2 and single["world_size"] == 1
        assert {k: v.shape for k, v in ddp["state_dict"].items()} == {
            k: v.shape for k, v in single["state_dict"].items()}
        assert 0.0 <= ddp["val_acc"] <= 1.0
    for stage in ("teacher", "students"):  # rank 0 logs every epoch once; the finished stage's checkpoint is gone
        rows = (out / "logs" / stage / "metrics.csv").read_text().splitlines()
        assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
        assert (out / "plots" / f"training_{stage}.png").is_file()
    assert not (out / "checkpoints").exists()
    m_ddp = json.loads((out / "metrics.json").read_text())
    m_one = json.loads((tiny_run / "metrics.json").read_text())
    assert m_ddp["teacher"]["params"] == m_one["teacher"]["params"]
    assert [s["filters"] for s in m_ddp["nonn"]["students"]] and m_ddp["k"] == m_one["k"] == 2
    assert sum(s["filters"] for s in m_ddp["nonn"]["students"]) == 128


@pytest.mark.slow
def test_two_process_ddp_run_killed_mid_teacher_resumes(tmp_path):
    """SIGKILL to the whole process group of a DDP run (the run, its stage process and the worker rank),
    then the same command: the teacher resumes from its checkpoint and the run completes."""
    import os
    import signal
    import subprocess
    import sys

    from nonn_test_support import REPO

    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "nonn.cli", "run", "--dataset", "digits", "--k", "2", "--out", str(out),
            *tiny_args("trainer.devices=2", "trainer.strategy=ddp", "teacher.epochs=3")]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if line.startswith("[teacher] epoch 2/3"):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert (out / "checkpoints" / "teacher" / "last.ckpt").is_file() and not (out / "teacher.pt").exists()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[teacher] resuming after epoch" in done.stdout, done.stdout
    assert "[teacher] epoch 1/3:" not in done.stdout and "[teacher] epoch 3/3:" in done.stdout
    rows = (out / "logs" / "teacher" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert torch.load(out / "teacher.pt", weights_only=True)["world_size"] == 2
