"""The nonn-edge wheel: built from src/nonn/edge alone, installed from the registry into an empty
venv without torch, it serves the demo run's students and head with mutual TLS and answers the
labels the PyTorch NoNN gives in process."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edge_support import Processes

REPO = Path(__file__).resolve().parents[2]
EDGE = REPO / "src" / "nonn" / "edge"
OFFLINE = ("Could not find a version", "No matching distribution", "NewConnectionError", "Network is unreachable",
           "Temporary failure in name resolution", "ConnectionError", "Max retries exceeded")


def _builder():
    spec = importlib.util.spec_from_file_location("build_wheel", REPO / "packaging" / "edge" / "build_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _builder().build(tmp_path_factory.mktemp("dist"))


def test_the_wheel_holds_the_edge_runtime_once_and_no_torch(wheel):
    assert wheel.name == "nonn_edge-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read("nonn_edge-0.1.0.dist-info/METADATA").decode()
        entry_points = zf.read("nonn_edge-0.1.0.dist-info/entry_points.txt").decode()
        record = zf.read("nonn_edge-0.1.0.dist-info/RECORD").decode()
        for name in names:  # every file is the tree's own, byte for byte
            if name.startswith("nonn/"):
                assert zf.read(name) == (REPO / "src" / name).read_bytes(), name
    packed = sorted(n for n in names if not n.startswith("nonn_edge-"))
    tree = sorted(f"nonn/edge/{p.name}" for p in EDGE.iterdir() if p.suffix in (".py", ".proto", ".pyi"))
    assert packed == tree
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    plain = sorted(r.split("==")[0] for r in requires if "extra ==" not in r)
    assert plain == sorted(["numpy", "onnxruntime", "grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf"])
    assert not any(bad in r.lower() for r in requires for bad in ("torch", "lightning", "scikit-learn", "sklearn"))
    assert any(r.startswith("pillow==") and 'extra == "images"' in r for r in requires)
    assert any(r.startswith("cryptography==") and 'extra == "certs"' in r for r in requires)
    assert "nonn-edge = nonn.edge.__main__:main" in entry_points
    assert all(name in record for name in names)


@pytest.fixture(scope="module")
def edge_venv(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("edge-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "--quiet",
                          f"{wheel}[images,certs]"], capture_output=True, text=True, timeout=900, check=False)
    if pip.returncode != 0:
        if any(word in pip.stderr for word in OFFLINE):
            pytest.skip(f"the package registry cannot be reached to install nonn-edge's dependencies: "
                        f"{pip.stderr.strip().splitlines()[-1]}")
        raise AssertionError(pip.stderr[-3000:])
    return venv


@pytest.mark.slow  # a fresh venv from the registry: about 50 s with pip's cache, minutes without
def test_an_edge_venv_serves_the_demo_run_with_mutual_tls(edge_venv, tiny_run, tmp_path):
    from nonn.deploy.local import ensure_export, in_process_labels
    from nonn.rundir import RunDir

    python, edge = edge_venv / "bin" / "python", edge_venv / "bin" / "nonn-edge"
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, timeout=60)
    assert no_torch.returncode == 1 and "No module named 'torch'" in no_torch.stderr
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean["PYTHONUNBUFFERED"] = "1"
    where = subprocess.run([str(python), "-c", "import nonn.edge; print(nonn.edge.__file__)"], capture_output=True,
                           text=True, timeout=60, env=clean, cwd=tmp_path)
    assert where.stdout.startswith(str(edge_venv)), where  # the installed copy, not the tree's

    rd = RunDir(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("logs", "deploy.json")))
    manifest_path, _ = ensure_export(rd, log=lambda *_: None)
    manifest = json.loads(manifest_path.read_text())
    images, _, in_process = in_process_labels(rd, 24)
    pki = tmp_path / "pki"
    made = subprocess.run([str(edge), "certs", str(pki), "--nodes", "2"], capture_output=True, text=True,
                          timeout=60, env=clean, cwd=tmp_path)
    assert made.returncode == 0, made.stderr

    procs = Processes(tmp_path)
    try:
        def mtls(name: str) -> list[str]:
            return ["--tls-cert", str(pki / f"{name}.pem"), "--tls-key", str(pki / f"{name}.key"),
                    "--tls-ca", str(pki / "ca.pem")]

        nodes = [procs.start("node", "--model", str(manifest_path.parent / s["file"]), "--listen", "127.0.0.1:0",
                             *mtls(f"node_{k}"), command=[str(edge)], env=clean, cwd=tmp_path)
                 for k, s in enumerate(manifest["students"])]
        gateway, address = procs.start("gateway", "--manifest", str(manifest_path), "--nodes",
                                       ",".join(a for _, a in nodes), "--listen", "127.0.0.1:0",
                                       "--deadline-ms", "5000", *mtls("gateway"),
                                       command=[str(edge)], env=clean, cwd=tmp_path)
        assert gateway.banner.endswith("(mtls)")
        for proc, _ in [*nodes, (gateway, None)]:  # every server runs from the venv, without torch
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            assert "torch" not in maps and str(edge_venv) in maps
        from PIL import Image

        folder = tmp_path / "images"
        folder.mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(folder / f"{i:03d}.png")
        result = subprocess.run([str(edge), "classify", "--gateway", address, str(folder), "--json",
                                 *mtls("client")], capture_output=True, text=True, timeout=120, env=clean,
                                cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        labels = np.array([json.loads(line)["label"] for line in result.stdout.splitlines()])
        np.testing.assert_array_equal(labels, in_process)
        refused = subprocess.run([str(edge), "classify", "--gateway", address, str(folder / "000.png"),
                                  "--tls-ca", str(pki / "ca.pem")], capture_output=True, text=True, timeout=60,
                                 env=clean, cwd=tmp_path)
        assert refused.returncode == 1 and refused.stderr.startswith("error: UNAVAILABLE")  # no client certificate
    finally:
        procs.close()
