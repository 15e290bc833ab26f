"""Link and device profiles: cited figures for radios and boards, loaded from JSON.

The built-in tables live in ``nonn/bench/profiles/{links,devices}.json``. A user may pass
the path of their own JSON file with the same schema (``{"links": {name: {...}}}`` or
``{"devices": {name: {...}}}``); every entry must say where its figures come from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nonn.errors import ConfigError

PathLike = str | Path


@dataclass(frozen=True)
class LinkProfile:
    """One network link as the benchmarks model it (application-level figures)."""

    name: str
    rate_bps: float
    delay_ms: float
    energy_per_bit_j: float
    source: str
    overhead_bytes: int = 0
    energy_per_bit_rx_j: float | None = None
    description: str = ""

    @property
    def rx_energy_per_bit_j(self) -> float:
        """Energy per received bit; the transmit figure when the profile gives none."""
        if self.energy_per_bit_rx_j is None:
            return self.energy_per_bit_j
        return self.energy_per_bit_rx_j


@dataclass(frozen=True)
class DeviceProfile:
    """One edge board: whole-board power and memory."""

    name: str
    active_power_w: float
    idle_power_w: float
    ram_bytes: int
    source: str
    cpu: str = ""
    relative_compute: float | None = None
    compute_note: str = ""
    description: str = ""


_LINK_FIELDS = {
    "rate_bps": float, "delay_ms": float, "energy_per_bit_j": float, "source": str,
    "overhead_bytes": int, "energy_per_bit_rx_j": float, "description": str,
}
_LINK_REQUIRED = ("rate_bps", "delay_ms", "energy_per_bit_j", "source")
_DEVICE_FIELDS = {
    "active_power_w": float, "idle_power_w": float, "ram_bytes": int, "source": str,
    "cpu": str, "relative_compute": float, "compute_note": str, "description": str,
}
_DEVICE_REQUIRED = ("active_power_w", "idle_power_w", "ram_bytes", "source")
_POSITIVE = {"rate_bps", "ram_bytes"}


def _read_table(path: PathLike | None, builtin: str, key: str) -> tuple[dict[str, Any], str]:
    if path is None:
        where = f"built-in profiles/{builtin}"
        text = resources.files("nonn.bench").joinpath("profiles", builtin).read_text("utf-8")
    else:
        where = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read profile file {where}: {exc.strerror}; "
                              f"pass an existing JSON file") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"profile file {where} is not valid JSON ({exc.msg} at line "
                          f"{exc.lineno}); fix the file") from exc
    table = data.get(key) if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"profile file {where} needs a non-empty object under "
                          f"\"{key}\" mapping names to entries")
    return table, where


def _coerce(name: str, entry: Any, fields: dict[str, type], required: tuple[str, ...],
            where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"profile '{name}' in {where} must be a JSON object")
    missing = [f for f in required if f not in entry]
    if missing:
        raise ConfigError(f"profile '{name}' in {where} lacks {', '.join(missing)}; "
                          f"add them (every entry needs {', '.join(required)})")
    out: dict[str, Any] = {}
    for field, kind in fields.items():
        if field not in entry or entry[field] is None:
            continue
        value = entry[field]
        if kind is str:
            if not isinstance(value, str):
                raise ConfigError(f"profile '{name}' in {where}: {field} must be a string")
            out[field] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ConfigError(f"profile '{name}' in {where}: {field} must be a finite "
                              f"number, got {value!r}")
        if kind is int and value != int(value):
            raise ConfigError(f"profile '{name}' in {where}: {field} must be a whole number")
        if value < 0 or (field in _POSITIVE and value == 0):
            bound = "positive" if field in _POSITIVE else "zero or more"
            raise ConfigError(f"profile '{name}' in {where}: {field} must be {bound}, "
                              f"got {value!r}")
        out[field] = kind(value)
    if not out["source"].strip():
        raise ConfigError(f"profile '{name}' in {where} has an empty source; cite where "
                          f"its figures come from")
    return out


def load_links(path: PathLike | None = None) -> dict[str, LinkProfile]:
    """All link profiles, from the built-in table or from the JSON file at ``path``."""
    table, where = _read_table(path, "links.json", "links")
    return {name: LinkProfile(name=name, **_coerce(name, entry, _LINK_FIELDS,
                                                   _LINK_REQUIRED, where))
            for name, entry in table.items()}


def load_devices(path: PathLike | None = None) -> dict[str, DeviceProfile]:
    """All device profiles, from the built-in table or from the JSON file at ``path``."""
    table, where = _read_table(path, "devices.json", "devices")
    return {name: DeviceProfile(name=name, **_coerce(name, entry, _DEVICE_FIELDS,
                                                     _DEVICE_REQUIRED, where))
            for name, entry in table.items()}


def _pick(kind: str, name: str, table: dict[str, Any]) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"unknown {kind} '{name}'; choose one of: "
                          f"{', '.join(sorted(table))}") from None


def get_link(name: str, path: PathLike | None = None) -> LinkProfile:
    """The link profile called ``name``; ConfigError listing the choices when unknown."""
    return _pick("link", name, load_links(path))


def get_device(name: str, path: PathLike | None = None) -> DeviceProfile:
    """The device profile called ``name``; ConfigError listing the choices when unknown."""
    return _pick("device", name, load_devices(path))
