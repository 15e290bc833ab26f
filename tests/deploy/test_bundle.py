"""`nonn bundle`: per-device bundles from a validated inventory, and a real multi-host deployment
on one machine: each device unpacked in its own folder and started, from its unit's command line,
in its own network namespace with its own address; classified over mutual TLS by address."""

from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from nonn.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def inventory(path: Path, addresses: dict[str, str], **extra) -> Path:
    devices = [{"name": "pi-0", "address": addresses["pi-0"], "role": "node 0", "cpu": "0"},
               {"name": "pi-1", "address": addresses["pi-1"], "role": "node 1", "metrics_port": 9100},
               {"name": "hub", "address": addresses["hub"], "role": "gateway", "user": "edge"}]
    import yaml

    path.write_text(yaml.safe_dump({"cluster": "lab", "devices": devices, **extra}))
    return path


def run_cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bundle") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("logs", "deploy.json"))
    return run


ADDRESSES = {"pi-0": "192.168.7.11", "pi-1": "192.168.7.12", "hub": "192.168.7.10"}


def test_each_device_gets_exactly_its_files(run_dir, tmp_path):
    from cryptography import x509

    from nonn.edge.manifest import load_manifest

    rc, out, err = run_cli("bundle", str(run_dir), "--inventory", str(inventory(tmp_path / "hosts.yaml", ADDRESSES)),
                           "--out", str(tmp_path / "out"))
    assert rc == 0, err
    manifest = load_manifest(run_dir / "onnx" / "manifest.json")
    common = {"tls/ca.pem", "nonn.env", "install.sh"}
    expected = {
        "pi-0": {manifest.students[0].file.name, "tls/pi-0.pem", "tls/pi-0.key", "nonn-pi-0.service"} | common,
        "pi-1": {manifest.students[1].file.name, "tls/pi-1.pem", "tls/pi-1.key", "nonn-pi-1.service"} | common,
        "hub": {"manifest.json", manifest.head_file.name, "tls/hub.pem", "tls/hub.key", "nonn-hub.service"} | common,
        "client": {"ca.pem", "client.pem", "client.key", "classify.sh"},
    }
    out_dir = tmp_path / "out"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(["ca", *expected, *(f"{n}.tar.gz" for n in expected)])
    for name, files in expected.items():
        folder = out_dir / name
        assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == files
        with tarfile.open(out_dir / f"{name}.tar.gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            assert set(members) == {f"{name}/{f}" for f in files}
            for member in members.values():
                assert tar.extractfile(member).read() == (out_dir / member.name).read_bytes()
                if member.name.endswith(".key"):
                    assert stat.S_IMODE(member.mode) == 0o600
        for key in folder.rglob("*.key"):
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((out_dir / "ca" / "ca.key").stat().st_mode) == 0o600
    assert not any(p.name == "ca.key" for name in expected for p in (out_dir / name).rglob("*"))

    for name in ("pi-0", "pi-1", "hub"):
        cert = x509.load_pem_x509_certificate((out_dir / name / "tls" / f"{name}.pem").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert name in sans.get_values_for_type(x509.DNSName)
        assert ADDRESSES[name] in [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
        role = "gateway/gateway" if name == "hub" else f"node/{name[-1]}"
        assert f"spiffe://nonn/lab/{role}" in sans.get_values_for_type(x509.UniformResourceIdentifier)
        unit = (out_dir / name / f"nonn-{name}.service").read_text()
        for line in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                     f"User={'edge' if name == 'hub' else 'nonn'}"):
            assert line in unit.splitlines(), (name, line)
        assert "User=root" not in unit
    env = (out_dir / "hub" / "nonn.env").read_text()
    assert "--nodes 192.168.7.11:50051,192.168.7.12:50051" in env and "--listen 0.0.0.0:50050" in env
    assert "--cpu 0" in (out_dir / "pi-0" / "nonn.env").read_text()
    assert "--metrics-listen 0.0.0.0:9100" in (out_dir / "pi-1" / "nonn.env").read_text()
    assert f"--expect-sha256 {manifest.students[1].sha256}" in (out_dir / "pi-1" / "nonn.env").read_text()


BAD = {
    "too few nodes": ({"drop": "pi-1"}, "lists 1 nodes but the manifest has 2 students"),
    "duplicate address": ({"address": ("pi-1", "192.168.7.11")}, "have the same address 192.168.7.11"),
    "unknown role": ({"role": ("pi-1", "camera")}, "unknown role 'camera'"),
    "node twice": ({"role": ("pi-1", "node 0")}, "node 0 appears twice"),
    "root user": ({"user": ("pi-1", "root")}, "non-root account"),
    "unknown key": ({"colour": ("pi-1", "red")}, "unknown key 'colour'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_inventory_is_one_line_and_exit_2(run_dir, tmp_path, case):
    import yaml

    change, words = BAD[case]
    devices = [{"name": n, "address": a, "role": r} for n, a, r in
               (("pi-0", ADDRESSES["pi-0"], "node 0"), ("pi-1", ADDRESSES["pi-1"], "node 1"),
                ("hub", ADDRESSES["hub"], "gateway"))]
    for key, value in change.items():
        if key == "drop":
            devices = [d for d in devices if d["name"] != value]
        else:
            name, new = value
            next(d for d in devices if d["name"] == name)[key] = new
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"devices": devices}))
    rc, out, err = run_cli("bundle", str(run_dir), "--inventory", str(hosts), "--out", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and words in lines[0] and lines[0].startswith("error: inventory "), err
    assert not (tmp_path / "out").exists()


def _start(argv: list[str], prefix: list[str], cwd: Path, log: Path, procs: list) -> subprocess.Popen:
    """Run a unit's command line on a device; wait for its JSON start event."""
    env = {"PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    program = argv[0]
    assert program.endswith("/venv/bin/nonn-edge"), program  # the installed runtime; here the tree's
    with open(log, "wb") as out:
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "nonn.edge", *argv[1:]], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    procs.append(proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "start":
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{argv[:2]} did not start: {log.read_text()[-2000:]}")


def test_bundles_serve_from_three_namespaces_over_mutual_tls(run_dir, tmp_path):
    from nonn.bench.links import netns_available

    ok, why = netns_available()
    if not ok:
        pytest.skip(f"network namespaces are not permitted here ({why}): the multi-host deployment is not tested")
    from lan import Lan
    from PIL import Image

    from nonn.deploy.bundle import read_unit_command
    from nonn.deploy.local import in_process_labels
    from nonn.rundir import RunDir

    images, _, in_process = in_process_labels(RunDir(run_dir), 16)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(folder / f"{i:03d}.png")

    procs: list[subprocess.Popen] = []
    with Lan(["pi-0", "pi-1", "hub", "laptop"]) as lan:
        try:
            hosts = inventory(tmp_path / "hosts.yaml", lan.address)
            for out in ("out", "other"):
                rc, _, err = run_cli("bundle", str(run_dir), "--inventory", str(hosts), "--out", str(tmp_path / out))
                assert rc == 0, err
            devices = tmp_path / "devices"
            for name in ("pi-0", "pi-1", "hub", "client"):  # each device unpacks only its own archive
                with tarfile.open(tmp_path / "out" / f"{name}.tar.gz") as tar:
                    tar.extractall(devices / name, filter="data")
            for name in ("pi-0", "pi-1", "hub"):
                home = devices / name / name
                _start(read_unit_command(home), lan.prefix(name), home, tmp_path / f"{name}.log", procs)

            def classify(credentials: Path, *files: Path) -> subprocess.CompletedProcess:
                return subprocess.run(
                    [*lan.prefix("laptop"), sys.executable, "-m", "nonn.edge", "classify", "--gateway",
                     f"{lan.address['hub']}:50050", "--tls-ca", str(credentials / "ca.pem"), "--tls-cert",
                     str(credentials / "client.pem"), "--tls-key", str(credentials / "client.key"), "--json",
                     *map(str, files)],
                    capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})

            result = classify(devices / "client" / "client", folder)
            assert result.returncode == 0, result.stderr + "".join(
                (tmp_path / f"{n}.log").read_text()[-800:] for n in ("pi-0", "pi-1", "hub"))
            records = [json.loads(line) for line in result.stdout.splitlines()]
            np.testing.assert_array_equal([r["label"] for r in records], in_process)
            assert {n["address"] for r in records for n in r["nodes"]} == {
                f"{lan.address['pi-0']}:50051", f"{lan.address['pi-1']}:50051"}

            foreign = classify(tmp_path / "other" / "client", folder / "000.png")
            assert foreign.returncode == 1 and foreign.stderr.startswith("error: UNAVAILABLE"), foreign.stderr
            assert all(p.poll() is None for p in procs)  # the refused client harmed nobody
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
