"""make_certs: a private CA and leaves with the right names, usages and file modes."""

import ipaddress
import stat

import pytest

from nonn.edge.certs import make_certs
from nonn.edge.errors import EdgeError

x509 = pytest.importorskip("cryptography.x509")


def test_writes_every_file_with_private_keys_0600(pki):
    names = {p.relative_to(pki).as_posix() for p in pki.rglob("*") if p.is_file()}
    expected = {f"{n}.{ext}" for n in ("node_0", "node_1", "gateway", "client") for ext in ("pem", "key")}
    expected |= {"ca.pem", "ca/ca.key"}  # the CA key in a folder of its own
    assert names == expected  # no temporary files left behind
    for name in expected:
        mode = stat.S_IMODE((pki / name).stat().st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), name


def test_leaves_are_signed_by_the_ca_and_valid_for_loopback(pki):
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf in ("node_0", "node_1", "gateway", "client"):
        cert = x509.load_pem_x509_certificate((pki / f"{leaf}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        ips = san.get_values_for_type(x509.IPAddress)
        assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("::1") in ips


def test_extra_hosts_and_refusal_to_overwrite(tmp_path):
    make_certs(tmp_path, nodes=1, hosts=["pi-node-0.local", "10.0.0.7"])
    cert = x509.load_pem_x509_certificate((tmp_path / "node_0.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "pi-node-0.local" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.0.0.7") in san.get_values_for_type(x509.IPAddress)
    with pytest.raises(EdgeError, match="--force"):
        make_certs(tmp_path, nodes=1)
    make_certs(tmp_path, nodes=1, overwrite=True)
