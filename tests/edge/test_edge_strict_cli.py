"""Strict addresses and one-line errors: what gRPC would take silently (a port modulo 65536, a
random port, port 443) or report in several log lines is refused by nonn in one line, exit 2."""

import subprocess
import sys

import pytest
from edge_support import edge_env

from nonn.edge.addresses import is_loopback, split_address
from nonn.edge.errors import EdgeError


def run(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "nonn.edge", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env=edge_env())


def one_line_exit_2(result, *words):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.mark.parametrize("address", ["127.0.0.1:99999", ":65536", "localhost", "127.0.0.1:-1", "127.0.0.1:", "::1:5"])
def test_bad_addresses_are_refused(address):
    with pytest.raises(EdgeError, match=r"--listen"):
        split_address(address)


def test_good_addresses_and_loopback():
    assert split_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert split_address("[::1]:50051") == ("::1", 50051)
    assert split_address("node-0.local:65535") == ("node-0.local", 65535)
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.7")


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:65536", "localhost"])
def test_node_refuses_a_bad_listen_address_in_one_line(artifacts, listen):
    one_line_exit_2(run("node", "--model", str(artifacts.students[0]), "--listen", listen, "--insecure"), listen)


def test_gateway_refuses_out_of_range_node_ports(artifacts):
    result = run("gateway", "--manifest", str(artifacts.manifest), "--nodes", "127.0.0.1:1,127.0.0.1:70000",
                 "--listen", "127.0.0.1:0", "--insecure")
    one_line_exit_2(result, "127.0.0.1:70000", "--nodes")


def test_mismatched_key_says_so_in_one_line_without_grpc_logs(artifacts, pki):
    result = run("node", "--model", str(artifacts.students[0]), "--listen", "127.0.0.1:0",
                 "--tls-cert", str(pki / "node_0.pem"), "--tls-key", str(pki / "node_1.key"), "--tls-ca", str(pki / "ca.pem"))
    one_line_exit_2(result, "does not match the certificate")


def test_busy_port_is_one_line_without_grpc_logs(artifacts, processes):
    _, address = processes.node(artifacts.students[0])
    one_line_exit_2(run("node", "--model", str(artifacts.students[0]), "--listen", address, "--insecure"),
                    "cannot listen on")


def test_plaintext_off_loopback_warns_in_one_line(artifacts, capsys):
    from nonn.edge.node import serve_node

    server, _ = serve_node(artifacts.students[0], "0.0.0.0:0", insecure=True)
    server.stop(0)
    err = capsys.readouterr().err
    assert err.startswith("warning: --insecure on 0.0.0.0:0") and err.count("\n") == 1, err
    server, _ = serve_node(artifacts.students[0], "127.0.0.1:0", insecure=True)
    server.stop(0)
    assert capsys.readouterr().err == ""


def test_certs_on_a_file_and_a_negative_timeout_are_one_line(tmp_path):
    file = tmp_path / "taken"
    file.write_text("x")
    one_line_exit_2(run("certs", str(file), "--nodes", "1"), "is a file")
    one_line_exit_2(run("classify", "--gateway", "127.0.0.1:1", str(file), "--insecure", "--timeout-s", "-1"),
                    "--timeout-s")
    one_line_exit_2(run("classify", "--gateway", "127.0.0.1:99999", str(file), "--insecure"), "--gateway")
