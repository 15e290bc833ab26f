"""The node and gateway commands pick gRPC's polling I/O before grpc is imported, unless told not to."""

import subprocess
import sys

from edge_support import edge_env

CODE = ("import os, sys\n"
        "from nonn.edge.grpc_io import EXPERIMENTS, use_polling_io\n"
        "changed = use_polling_io()\n"
        "print(changed, os.environ.get('GRPC_EXPERIMENTS'), EXPERIMENTS)\n")


def _run(env, prelude=""):
    result = subprocess.run([sys.executable, "-c", prelude + CODE], capture_output=True, text=True, check=False,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_sets_the_experiments_before_grpc_is_imported():
    env = {k: v for k, v in edge_env().items() if k != "GRPC_EXPERIMENTS"}
    changed, value, expected = _run(env)
    assert changed == "True" and value == expected


def test_leaves_a_set_variable_and_a_loaded_grpc_alone():
    env = {k: v for k, v in edge_env().items() if k != "GRPC_EXPERIMENTS"}
    assert _run({**env, "GRPC_EXPERIMENTS": "-event_engine_fork"})[:2] == ["False", "-event_engine_fork"]
    assert _run(env, prelude="import grpc\n")[:2] == ["False", "None"]
