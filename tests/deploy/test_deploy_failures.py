"""Deployments that cannot start, and interrupted ones, leave no process behind."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from deploy_support import copy_run, edge_children, pid_alive
from nonn_test_support import REPO

from nonn.cli import main


def test_a_node_that_fails_to_start_is_one_line_exit_2(deployed, tmp_path, capsys):
    already = set(edge_children())  # servers other tests keep for the session (tests/edge's shared nodes)
    run = copy_run(deployed[0], tmp_path / "run")
    bad = run / "onnx" / "student_1.onnx"
    bad.write_bytes(b"this is not an ONNX model")
    manifest = json.loads((run / "onnx" / "manifest.json").read_text())
    manifest["students"][1]["sha256"] = hashlib.sha256(bad.read_bytes()).hexdigest()
    (run / "onnx" / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["deploy-local", str(run), "--insecure", "--limit", "4"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: node 1 exited with code 2 while starting"), lines
    assert "cannot load ONNX model" in lines[0] and "student_1.onnx" in lines[0]
    assert not (run / "deploy.json").exists()
    assert set(edge_children()) - already == set()


def _deployer(run, stderr) -> tuple[subprocess.Popen, list[int]]:
    """`nonn deploy-local` on a long load, and the pids of its servers once the gateway is up."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nonn.cli", "deploy-local", str(run), "--insecure",
                             "--requests", "100000", "--concurrency", "1"],
                            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO, env=env)
    pids = []
    try:
        for line in proc.stdout:
            if line.startswith("[deploy] ") and " pid " in line:
                pids.append(int(line.split(" pid ", 1)[1].split()[0]))
            if line.startswith("[deploy] gateway pid"):
                break
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, pids


def test_ctrl_c_stops_every_process(deployed, tmp_path):
    run = copy_run(deployed[0], tmp_path / "run")
    proc, pids = _deployer(run, subprocess.PIPE)
    try:
        assert len(pids) == 3, proc.stderr.read()
        assert all(pid_alive(pid) for pid in pids)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        assert time.monotonic() - sent < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 130, proc.stderr.read()
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not (run / "deploy.json").exists()


@pytest.mark.slow  # PR_SET_PDEATHSIG; about 6 s
def test_sigkill_of_the_deployer_takes_its_children_along(deployed, tmp_path):
    run = copy_run(deployed[0], tmp_path / "run")
    proc, pids = _deployer(run, subprocess.DEVNULL)
    try:
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(pids) == 3 and [pid for pid in pids if pid_alive(pid)] == []
