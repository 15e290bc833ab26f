"""The commands as a device runs them: `python -m nonn.edge gateway|classify|certs`."""

import argparse
import json
import re
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
from edge_support import IMAGE, edge_env, free_port, reference

from nonn.edge.commands import register


def run(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "nonn.edge", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env=edge_env())


def test_gateway_and_classify_commands(processes, shared_nodes, artifacts, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    proc, address = processes.start("gateway", "--manifest", str(artifacts.manifest), "--nodes",
                                    ",".join(shared_nodes), "--listen", "127.0.0.1:0", "--insecure",
                                    "--deadline-ms", "2000")
    assert proc.banner == f"nonn gateway serving manifest.json (2 nodes) on {address} (insecure)"
    png = tmp_path / "image.png"
    Image.fromarray(IMAGE).save(png)
    result = run("classify", "--gateway", address, str(png), "--insecure", "--json")
    assert result.returncode == 0, result.stderr
    prediction = json.loads(result.stdout)
    np.testing.assert_allclose(prediction["logits"], reference(artifacts), atol=1e-5)

    npy = tmp_path / "image.npy"
    np.save(npy, IMAGE)
    text = run("classify", "--gateway", address, str(npy), "--insecure", "--verbose")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"label {prediction['label']} ") and "node 1 " in text.stdout

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_banners_name_model_address_and_mode(processes, artifacts, pki):
    proc, _ = processes.node(artifacts.students[0])
    assert re.fullmatch(r"nonn node serving student_0\.onnx on 127\.0\.0\.1:[1-9]\d* \(insecure\)", proc.banner)
    proc, _ = processes.node(artifacts.students[1], "--tls-cert", str(pki / "node_1.pem"), "--tls-key",
                             str(pki / "node_1.key"), "--tls-ca", str(pki / "ca.pem"), insecure=False)
    assert proc.banner.startswith("nonn node serving student_1.onnx on 127.0.0.1:") and proc.banner.endswith("(mtls)")


def test_classify_errors_are_one_line(tmp_path):
    npy = tmp_path / "image.npy"
    np.save(npy, IMAGE)
    down = run("classify", "--gateway", f"127.0.0.1:{free_port()}", str(npy), "--insecure", "--timeout-s", "2")
    assert down.returncode == 1 and down.stderr.startswith("error: UNAVAILABLE") and down.stderr.count("\n") == 1
    missing = run("classify", "--gateway", "127.0.0.1:1", str(tmp_path / "nope.png"), "--insecure")
    assert missing.returncode == 2 and missing.stderr.startswith("error: image ") and "Traceback" not in missing.stderr
    plain = run("classify", "--gateway", "127.0.0.1:1", str(npy))
    assert plain.returncode == 2 and "--insecure" in plain.stderr


def test_certs_command(tmp_path):
    result = run("certs", str(tmp_path / "pki"), "--nodes", "3", "--host", "gateway.local")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pki" / "node_2.pem").is_file()
    assert stat.S_IMODE((tmp_path / "pki" / "node_2.key").stat().st_mode) == 0o600
    again = run("certs", str(tmp_path / "pki"), "--nodes", "3")
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--force" in again.stderr


def test_register_adds_the_four_subcommands():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["node", "--model", "m.onnx", "--insecure", "--delay-ms", "5"])
    assert callable(args.func) and args.delay_ms == 5.0 and args.listen == "127.0.0.1:50051"
    args = parser.parse_args(["gateway", "--manifest", "m.json", "--nodes", "a:1,b:2", "--degraded"])
    assert args.degraded and args.deadline_ms == 1000.0
    args = parser.parse_args(["classify", "--gateway", "h:1", "x.png", "--json"])
    assert args.json and args.file == ["x.png"] and not args.no_resize
    args = parser.parse_args(["certs", "d", "--nodes", "2", "--host", "a", "--host", "b"])
    assert args.host == ["a", "b"]


def test_a_gateway_max_batch_below_one_is_one_line_and_exit_2(artifacts):
    result = run("gateway", "--manifest", str(artifacts.manifest), "--nodes", "127.0.0.1:1,127.0.0.1:2",
                 "--insecure", "--max-batch", "0")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--max-batch must be at least 1, got 0" in lines[0]
