"""Helpers the tests share (importable because pytest puts tests/ on sys.path)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A tiny digits configuration: seconds per stage on 2 CPU cores.
TINY = [
    "data.limit_train=200", "teacher.arch=wrn-10-2", "teacher.epochs=2", "students.arch=wrn-10-1",
    "students.epochs=2", "trainer.progress=false", "trainer.accelerator=cpu",
]


def tiny_args(*extra: str) -> list[str]:
    args = []
    for item in [*TINY, *extra]:
        args += ["--set", item]
    return args


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `nonn` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "nonn.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=REPO)
