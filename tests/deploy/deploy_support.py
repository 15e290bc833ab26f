"""Helpers for the deployment tests: copies of a run directory and the processes a test left behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nonn.deploy.procfs import pid_alive

__all__ = ["copy_run", "edge_children", "pid_alive"]


def copy_run(src: Path, dest: Path) -> Path:
    """A private copy of a run directory (without the logs of earlier deployments)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("logs", "deploy.json"))
    return dest


def edge_children(parent: int | None = None) -> list[int]:
    """PIDs of live `nonn.edge` servers whose parent is `parent` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"nonn.edge" in cmdline:
            found.append(int(entry.name))
    return found
