"""What /proc tells about a process (Linux): peak resident memory, CPU time, whether it lives."""

from __future__ import annotations

import os


def peak_rss_bytes(pid: int | None = None) -> int | None:
    """VmHWM of `pid` (default: this process) in bytes, or None where /proc cannot tell."""
    return _status_bytes(pid, "VmHWM:")


def rss_bytes(pid: int | None = None) -> int | None:
    """VmRSS (resident now) of `pid` (default: this process) in bytes, or None where /proc cannot tell."""
    return _status_bytes(pid, "VmRSS:")


def _status_bytes(pid: int | None, field: str) -> int | None:
    path = f"/proc/{pid if pid is not None else os.getpid()}/status"
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    value, unit = line.split()[1:3]
                    return int(value) * {"kB": 1024, "mB": 1024 ** 2}.get(unit, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cpu_seconds(pid: int | None = None) -> float | None:
    """User plus system CPU time `pid` (default: this process) has used so far, or None."""
    try:
        with open(f"/proc/{pid if pid is not None else os.getpid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
