"""Child server processes that never outlive their parent: start, wait for the banner, stop.

Each child is `python -m nonn.edge ...` (or another module) started through a small launcher that asks the
kernel to SIGKILL it when this process dies (PR_SET_PDEATHSIG, Linux), so even a SIGKILL of
the parent leaves no orphan. Children run in their own session, so a terminal's Ctrl-C
reaches only the parent, which then stops them in order (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from nonn.edge.options import GatewayOptions, NodeOptions

from .errors import DeployError
from .procfs import peak_rss_bytes

STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
POLL_S = 0.02

# argv: -c CODE PARENT_PID MODULE args...  The signal mask is cleared in case the parent
# had signals blocked; a parent that died before prctl took effect makes the child quit.
_LAUNCHER = """\
import ctypes, os, runpy, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, [])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("nonn: parent exited before this server started")
sys.modules["torch"] = None  # the edge runtime must not need torch; keeps its memory honest
module = sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@dataclass
class Child:
    """One started server: its name for messages, process, logs and bound address."""

    name: str
    proc: subprocess.Popen
    stdout: Path
    stderr: Path
    address: str = ""
    banner: str = ""
    returncode: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, lines: int = 1) -> str:
        try:
            text = self.stderr.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])[:400]


def node_args(model: str | Path, listen: str, options: NodeOptions, *, cpu: int | str | None = None) -> list[str]:
    """`nonn.edge node ...`: serve `model` on `listen` with `options`, on core(s) `cpu` when given."""
    return ["node", "--model", str(model), "--listen", listen, *([] if cpu is None else ["--cpu", str(cpu)]),
            *options.cli_args()]


def gateway_args(manifest: str | Path, nodes: Sequence[str], listen: str, options: GatewayOptions) -> list[str]:
    """`nonn.edge gateway ...`: fan out to `nodes` (host:port, in partition order) with `options`."""
    return ["gateway", "--manifest", str(manifest), "--nodes", ",".join(nodes), "--listen", listen,
            *options.cli_args()]


def _package_root() -> str:
    """The directory holding the `nonn` package, so children import this very copy."""
    return str(Path(__file__).resolve().parents[2])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT/SIGTERM until the block ends (main thread only), then raise KeyboardInterrupt.

    Used around "start a child and record it" and around shutdown, so an interrupt can
    neither lose track of a just-started child nor cut the cleanup short.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_on_signals():
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread for the block's duration,
    even when the shell started this process with SIGINT ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class ChildProcesses:
    """Every server this process started; close() stops them all. Use it as a context manager."""

    def __init__(self, logdir: Path, *, startup_timeout_s: float = STARTUP_TIMEOUT_S,
                 grace_s: float = STOP_GRACE_S):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.startup_timeout_s = float(startup_timeout_s)
        self.grace_s = float(grace_s)
        self.children: list[Child] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, name: str, edge_args: list[str], **spawn_options) -> Child:
        """Start `python -m nonn.edge EDGE_ARGS` (see spawn() for the options) and wait for its
        "nonn ... on HOST:PORT" line."""
        child = self.spawn(name, edge_args, **spawn_options)
        self.await_ready([child])
        return child

    def spawn(self, name: str, edge_args: list[str], *, module: str = "nonn.edge", prefix: Sequence[str] = (),
              env: dict[str, str] | None = None) -> Child:
        """Start `python -m MODULE EDGE_ARGS` (torch blocked) without waiting; see await_ready().
        `prefix` goes before the interpreter (`ip netns exec NS`, `taskset -c 1`); `env`
        replaces child_env()."""
        stem = name.replace(" ", "_")
        out, err = self.logdir / f"{stem}.out", self.logdir / f"{stem}.err"
        cmd = [*prefix, sys.executable, "-c", _LAUNCHER, str(os.getpid()), module, *edge_args]
        with deferred_signals(), open(out, "wb") as fout, open(err, "wb") as ferr:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr,
                                    env=child_env() if env is None else env, start_new_session=True, close_fds=True)
            child = Child(name, proc, out, err)
            self.children.append(child)
        return child

    def await_ready(self, children: list[Child]) -> None:
        """Wait until every child has printed its address; DeployError for the first that dies or is late."""
        deadline = time.monotonic() + self.startup_timeout_s
        waiting = list(children)
        while waiting:
            for child in list(waiting):
                line = _banner(child.stdout)
                if line:
                    child.banner = line
                    child.address = line.rsplit(" on ", 1)[1].split(" ", 1)[0]
                    waiting.remove(child)
                    continue
                code = child.proc.poll()
                if code is not None:
                    child.returncode = code
                    raise DeployError(f"{child.name} exited with code {code} while starting: "
                                      f"{child.stderr_tail() or 'no message'} (log: {child.stderr})")
            if waiting and time.monotonic() > deadline:
                late = waiting[0]
                raise DeployError(f"{late.name} did not report its address within {self.startup_timeout_s:g} s; "
                                  f"last message: {late.stderr_tail() or 'none'} (log: {late.stderr}); "
                                  "raise --startup-timeout-s on a slow machine")
            if waiting:
                time.sleep(POLL_S)

    def alive(self) -> list[Child]:
        return [c for c in self.children if c.proc.poll() is None]

    def check_alive(self) -> None:
        """DeployError naming the first child that has exited."""
        for c in self.children:
            code = c.proc.poll()
            if code is not None:
                raise DeployError(f"{c.name} (pid {c.pid}) exited with code {code}: "
                                  f"{c.stderr_tail() or 'no message'} (log: {c.stderr})")

    def peak_rss(self) -> dict[str, int | None]:
        """VmHWM of every child still running, by name (read before stopping them)."""
        return {c.name: peak_rss_bytes(c.pid) for c in self.children if c.proc.poll() is None}

    def close(self) -> None:
        """SIGTERM every child, SIGKILL the ones still there after the grace period, reap all."""
        with deferred_signals():
            self._stop(self.children)

    def _stop(self, children: list[Child]) -> None:
        for c in children:
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for c in children:
            try:
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.kill()
                c.proc.wait()
            c.returncode = c.proc.returncode


def _banner(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("nonn ") and " on " in line:
            return line.strip()
    return ""
