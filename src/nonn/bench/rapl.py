"""CPU package energy from Linux RAPL (powercap sysfs), when this machine exposes it.

Only the top-level zones (``intel-rapl:N``, one per CPU package) are summed; their
subzones (core, uncore, dram) are parts of the same energy and the ``psys`` zone covers the
whole platform, so adding either would count energy twice. Counters wrap at
``max_energy_range_uj``; one wrap per measured block is corrected, so a block must be
shorter than one counter period (tens of minutes at full package power).

Nothing here raises when RAPL is missing or unreadable (no powercap, a VM, a non-Intel
board, or ``energy_uj`` readable by root only since Linux 5.10): ``available()`` says why
and ``RaplMeter.joules`` stays ``None``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")


@dataclass(frozen=True)
class RaplZone:
    """One top-level RAPL zone and its counter range."""

    path: Path
    name: str
    max_energy_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def _zones(root: Path) -> tuple[list[RaplZone], str]:
    if not root.is_dir():
        return [], f"{root} does not exist (no powercap support in this kernel or container)"
    zones: list[RaplZone] = []
    for entry in sorted(root.iterdir()):
        if not _TOP_ZONE.match(entry.name):
            continue
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            name = entry.name
        try:
            max_range = int((entry / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            max_range = 0
        zones.append(RaplZone(entry, name, max_range))
    if any(z.name.startswith("package") for z in zones):
        zones = [z for z in zones if z.name != "psys"]
    if not zones:
        return [], f"{root} has no intel-rapl:N zones (not an Intel/AMD RAPL machine, or a VM)"
    return zones, ""


def available(root: Path = POWERCAP) -> tuple[bool, str]:
    """Whether package energy can be read here, and why (or why not)."""
    zones, reason = _zones(Path(root))
    if not zones:
        return False, reason
    for zone in zones:
        try:
            zone.read_uj()
        except PermissionError:
            return False, (f"{zone.path / 'energy_uj'} is not readable by this user "
                           f"(root only since Linux 5.10); run as root or grant read access")
        except (OSError, ValueError) as exc:
            return False, f"cannot read {zone.path / 'energy_uj'}: {exc}"
    names = ", ".join(f"{z.path.name} ({z.name})" for z in zones)
    return True, f"RAPL readable: {names}"


def _delta_uj(start: int, end: int, max_range: int) -> int:
    if end >= start:
        return end - start
    return end + max_range - start if max_range > 0 else 0


class RaplMeter:
    """Context manager measuring CPU package energy over a block.

    ``with RaplMeter() as m: work()`` then ``m.joules`` (``None`` when unavailable, with
    ``m.reason`` saying why) and ``m.seconds``. Never raises for RAPL trouble.
    """

    def __init__(self, root: Path = POWERCAP) -> None:
        self.root = Path(root)
        self.available = False
        self.reason = "not measured yet"
        self.joules: float | None = None
        self.seconds: float | None = None
        self.zones: list[RaplZone] = []
        self._start: list[int] = []
        self._t0 = 0.0

    def __enter__(self) -> RaplMeter:  # noqa: PYI034
        self.available, self.reason = available(self.root)
        if self.available:
            self.zones, _ = _zones(self.root)
            try:
                self._start = [z.read_uj() for z in self.zones]
            except (OSError, ValueError) as exc:
                self.available, self.reason = False, f"RAPL read failed at start: {exc}"
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> bool:
        self.seconds = time.perf_counter() - self._t0
        if self.available:
            try:
                end = [z.read_uj() for z in self.zones]
            except (OSError, ValueError) as exc:
                self.available, self.reason = False, f"RAPL read failed at end: {exc}"
            else:
                total = sum(_delta_uj(s, e, z.max_energy_range_uj)
                            for s, e, z in zip(self._start, end, self.zones))
                self.joules = total / 1e6
        return False
