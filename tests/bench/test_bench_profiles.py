"""Link and device profiles: built-in tables load, every entry cites a source, user files
with the same schema load, and bad names or files give one-line ConfigErrors."""

from __future__ import annotations

import json

import pytest

from nonn.bench.profiles import (
    DeviceProfile,
    LinkProfile,
    get_device,
    get_link,
    load_devices,
    load_links,
)
from nonn.errors import ConfigError


def test_builtin_links_load_and_cite_sources():
    links = load_links()
    assert {"wifi", "ble", "ethernet"} <= set(links)
    for name, link in links.items():
        assert isinstance(link, LinkProfile) and link.name == name
        assert link.rate_bps > 0 and link.delay_ms >= 0 and link.energy_per_bit_j > 0
        assert len(link.source.strip()) > 20, f"{name} needs a real source"


def test_builtin_link_figures_are_the_documented_ones():
    assert get_link("wifi").rate_bps == 20e6
    assert get_link("ethernet").rate_bps == 100e6
    ble = get_link("ble")
    assert ble.rate_bps < 1e6      # application throughput, below the 1 Mbit/s PHY
    assert ble.rx_energy_per_bit_j == ble.energy_per_bit_j   # no separate rx figure
    wifi = get_link("wifi")
    assert wifi.rx_energy_per_bit_j < wifi.energy_per_bit_j


def test_builtin_devices_load_and_cite_sources():
    devices = load_devices()
    assert {"rpi3b", "rpi3b_plus", "nrf52840"} <= set(devices)
    for name, device in devices.items():
        assert isinstance(device, DeviceProfile) and device.name == name
        assert device.active_power_w > device.idle_power_w >= 0
        assert device.ram_bytes > 0
        assert len(device.source.strip()) > 20, f"{name} needs a real source"
    assert get_device("rpi3b_plus").ram_bytes == 1 << 30
    assert get_device("nrf52840").ram_bytes == 256 * 1024


@pytest.mark.parametrize("getter, kind", [(get_link, "link"), (get_device, "device")])
def test_unknown_name_lists_the_choices_in_one_line(getter, kind):
    with pytest.raises(ConfigError) as info:
        getter("carrier-pigeon")
    message = str(info.value)
    assert "\n" not in message
    assert f"unknown {kind} 'carrier-pigeon'" in message
    first = "ble" if kind == "link" else "nrf52840"
    assert first in message


def test_user_file_with_the_same_schema(tmp_path):
    path = tmp_path / "mylinks.json"
    path.write_text(json.dumps({"links": {"lora": {
        "rate_bps": 5470, "delay_ms": 50, "energy_per_bit_j": 1e-5,
        "source": "my own measurement, bench notebook page 3"}}}))
    link = get_link("lora", path)
    assert link.rate_bps == 5470.0 and link.overhead_bytes == 0
    assert link.rx_energy_per_bit_j == 1e-5
    with pytest.raises(ConfigError, match="choose one of: lora"):
        get_link("wifi", path)


@pytest.mark.parametrize("entry, fragment", [
    ({"rate_bps": 1, "delay_ms": 1, "energy_per_bit_j": 1e-9}, "lacks source"),
    ({"rate_bps": 1, "delay_ms": 1, "energy_per_bit_j": 1e-9, "source": " "}, "empty source"),
    ({"rate_bps": 0, "delay_ms": 1, "energy_per_bit_j": 1e-9, "source": "x"}, "positive"),
    ({"rate_bps": "fast", "delay_ms": 1, "energy_per_bit_j": 1e-9, "source": "x"},
     "finite number"),
    ({"rate_bps": 1, "delay_ms": -1, "energy_per_bit_j": 1e-9, "source": "x"}, "zero or more"),
])
def test_bad_entries_are_config_errors(tmp_path, entry, fragment):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"links": {"x": entry}}))
    with pytest.raises(ConfigError, match=fragment):
        load_links(path)


def test_missing_or_broken_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_devices(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_devices(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"links": {}}))
    with pytest.raises(ConfigError, match='"devices"'):
        load_devices(wrong)
