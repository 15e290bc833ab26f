"""What a node or gateway tells its operator: start, stop, a node lost or back, errors.

`--log-format text` (the default) prints the banner on stdout and the rest as plain lines on
stderr, as before; `--log-format json` writes every event as one JSON object per line on
stdout (journald and log shippers take it as is): {"ts", "level", "role", "event", ...}."""

from __future__ import annotations

import json
import sys
import threading
import time

LOG_FORMATS = ("text", "json")
ERROR_INTERVAL_S = 1.0  # at most one error event per second; the others are counted in the next


class Events:
    def __init__(self, role: str, log_format: str = "text", stream=None):
        if log_format not in LOG_FORMATS:
            from nonn.edge.errors import EdgeError

            raise EdgeError(f"--log-format {log_format!r} is unknown; pass text or json")
        self.role, self.json = role, log_format == "json"
        self._stream = stream
        self._lock = threading.Lock()
        self._last_error = 0.0
        self._suppressed = 0

    def emit(self, event: str, message: str, level: str = "info", **fields) -> None:
        if self.json:
            record = {"ts": round(time.time(), 6), "level": level, "role": self.role, "event": event,
                      "message": message, **fields}
            line, stream = json.dumps(record, default=str), self._stream or sys.stdout
        else:
            line = message
            stream = self._stream or (sys.stdout if event == "start" else sys.stderr)
        with self._lock:
            print(line, file=stream, flush=True)

    def error(self, message: str, **fields) -> None:
        """An error event, at most one per ERROR_INTERVAL_S (the count of the ones left out rides on the next)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_error < ERROR_INTERVAL_S:
                self._suppressed += 1
                return
            self._last_error, suppressed, self._suppressed = now, self._suppressed, 0
        if suppressed:
            fields["suppressed"] = suppressed
        self.emit("error", message, level="error", **fields)
