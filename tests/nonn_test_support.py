"""Helpers the tests share (importable because pytest puts tests/ on sys.path)."""

import os
import shutil
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


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz")


def debian_fashion_mnist() -> Path:
    """The folder of Debian's dataset-fashion-mnist, installed when missing; skips only if apt cannot get it."""
    import pytest
    if not all((DEBIAN_FASHION_MNIST / f).is_file() for f in FASHION_FILES) and shutil.which("apt-get"):
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]):
            subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    if not all((DEBIAN_FASHION_MNIST / f).is_file() for f in FASHION_FILES):
        pytest.skip("Debian's dataset-fashion-mnist is not installed and apt-get could not install it "
                    "(apt-get install dataset-fashion-mnist)")
    return DEBIAN_FASHION_MNIST
