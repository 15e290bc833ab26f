"""gRPC's socket engine for node and gateway processes, chosen before grpc is first imported.

grpcio 1.85 reads and writes sockets on EventEngine threads of its own, and wakes the
thread that waits on a completion queue once the bytes are in. Turning the two EventEngine
experiments off lets the waiting thread do the socket work itself: one thread wake-up fewer
per message, which on a small or busy CPU is a good part of a hop (measured on 2 cores:
about 20% less CPU per unary call on each side). Nothing else changes; set GRPC_EXPERIMENTS
yourself (even to an empty string) to keep gRPC's default.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

EXPERIMENTS = "-event_engine_client,-event_engine_listener"
TESTED = frozenset({(1, 85)})  # grpcio versions (major, minor) known to have both experiments


def use_polling_io() -> bool:
    """Set GRPC_EXPERIMENTS for this process (and its children) unless grpc is already loaded,
    the variable is already set, or the installed grpcio was not tested; True when set."""
    if "grpc" in sys.modules or "GRPC_EXPERIMENTS" in os.environ:
        return False
    try:
        version = tuple(int(part) for part in metadata.version("grpcio").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    if version not in TESTED:
        return False
    os.environ["GRPC_EXPERIMENTS"] = EXPERIMENTS
    return True


def quiet_grpc_logs() -> None:
    """Silence gRPC's own log lines (a failed bind, a refused handshake) in this process: every
    error the user can cause is reported once, in one line, by nonn. Set GRPC_VERBOSITY (for
    example to ERROR) to see them again."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
