"""RAPL reading: a reason either way on this machine, and the arithmetic (top-level zones
only, psys skipped, counter wraparound) on a fake powercap tree."""

from __future__ import annotations

from pathlib import Path

from nonn.bench import rapl


def _zone(root: Path, name: str, label: str, energy: int, max_range: int) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_available_here_gives_a_reason_either_way():
    ok, reason = rapl.available()
    assert isinstance(ok, bool) and reason.strip()
    with rapl.RaplMeter() as meter:
        sum(range(1000))
    assert meter.available == ok and meter.reason.strip()
    assert (meter.joules is None) == (not ok)
    assert meter.seconds is not None and meter.seconds >= 0


def test_missing_powercap_is_not_an_error(tmp_path):
    ok, reason = rapl.available(tmp_path / "absent")
    assert not ok and "does not exist" in reason
    empty = tmp_path / "powercap"
    empty.mkdir()
    assert rapl.available(empty) == (False, rapl.available(empty)[1])
    assert "no intel-rapl" in rapl.available(empty)[1]
    with rapl.RaplMeter(empty) as meter:
        pass
    assert meter.joules is None


def test_sums_packages_skips_subzones_and_psys_and_handles_wraparound(tmp_path):
    root = tmp_path / "powercap"
    pkg0 = _zone(root, "intel-rapl:0", "package-0", energy=990_000, max_range=1_000_000)
    pkg1 = _zone(root, "intel-rapl:1", "package-1", energy=100, max_range=1_000_000)
    psys = _zone(root, "intel-rapl:2", "psys", energy=0, max_range=1_000_000)
    core = _zone(root, "intel-rapl:0:0", "core", energy=0, max_range=1_000_000)
    ok, reason = rapl.available(root)
    assert ok and "package-0" in reason and "psys" not in reason
    with rapl.RaplMeter(root) as meter:
        (pkg0 / "energy_uj").write_text("20000\n")      # wrapped: +10_000 + 20_000 uJ
        (pkg1 / "energy_uj").write_text("500100\n")     # +500_000 uJ
        (psys / "energy_uj").write_text("999999\n")     # must be ignored
        (core / "energy_uj").write_text("999999\n")     # must be ignored
    assert meter.available
    assert meter.joules == 0.53


def test_unreadable_counter_mid_block_is_reported_not_raised(tmp_path):
    root = tmp_path / "powercap"
    pkg = _zone(root, "intel-rapl:0", "package-0", energy=5, max_range=100)
    with rapl.RaplMeter(root) as meter:
        (pkg / "energy_uj").unlink()
    assert meter.joules is None and not meter.available
    assert "failed at end" in meter.reason
