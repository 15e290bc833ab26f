"""`nonn node --cpu`: a node keeps to its cores, and a wrong core list is one line, exit 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from edge_support import edge_env

from nonn.edge.affinity import parse_cpus
from nonn.edge.errors import EdgeError

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")


def _allowed(status: Path) -> str:
    """The Cpus_allowed_list of a /proc status file."""
    for line in status.read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list in {status}")


def test_parse_cpus():
    assert parse_cpus("1") == {1}
    assert parse_cpus("0,2-3") == {0, 2, 3}
    for bad in ("", "a", "3-1", "-1"):
        with pytest.raises(EdgeError, match="--cpu takes core numbers"):
            parse_cpus(bad)


def test_node_runs_on_the_core_it_was_given(processes, artifacts):
    core = max(os.sched_getaffinity(0))
    proc, _ = processes.node(artifacts.students[0], "--cpu", str(core))
    assert _allowed(Path(f"/proc/{proc.pid}/status")) == str(core)
    threads = list(Path(f"/proc/{proc.pid}/task").iterdir())  # the server's and ONNX Runtime's too
    assert len(threads) > 1 and {_allowed(t / "status") for t in threads} == {str(core)}


def test_a_core_this_machine_lacks_is_one_line_and_exit_2(artifacts):
    missing = max(os.sched_getaffinity(0)) + 1
    done = subprocess.run([sys.executable, "-m", "nonn.edge", "node", "--model", str(artifacts.students[0]),
                           "--insecure", "--listen", "127.0.0.1:0", "--cpu", str(missing)],
                          capture_output=True, text=True, timeout=60, env=edge_env(), check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--cpu {missing} is not available here" in lines[0]
