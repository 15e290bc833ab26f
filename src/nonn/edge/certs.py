"""A private CA and leaf certificates for nodes, the gateway and a client (`nonn certs DIR`)."""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from nonn.edge.errors import EdgeError
from nonn.edge.files import write_atomic

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _san(hosts: Iterable[str]):
    from cryptography import x509

    names = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_certs(
    directory: str | Path,
    nodes: int,
    *,
    hosts: Iterable[str] = (),
    days: int = 825,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Create ca, node_<i>, gateway and client certificates (ECDSA P-256) in `directory`.

    Every leaf is valid for localhost, 127.0.0.1, ::1 and `hosts`. Keys are written 0600,
    every file atomically. Returns {name: path} for the written files.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if nodes < 1:
        raise EdgeError(f"--nodes must be at least 1, got {nodes}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.pem").exists() and not overwrite:
        raise EdgeError(f"{directory} already holds ca.pem; pass --force to replace it or choose another directory")
    hosts = [*DEFAULT_HOSTS, *hosts]
    now = _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5)
    until = now + _dt.timedelta(days=days)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def name(common: str):
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nonn"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("nonn private CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca.pem": ca_cert.public_bytes(serialization.Encoding.PEM), "ca.key": key_pem(ca_key)}

    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    leaves = [(f"node_{i}", [server, client]) for i in range(nodes)]
    leaves += [("gateway", [server, client]), ("client", [client])]
    for leaf, usages in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"nonn {leaf}"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=True, key_cert_sign=False,
                              crl_sign=False, encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        files[f"{leaf}.pem"] = cert.public_bytes(serialization.Encoding.PEM)
        files[f"{leaf}.key"] = key_pem(key)

    written = {}
    # ca.pem goes last: its presence means the set is complete.
    for filename, data in sorted(files.items(), key=lambda item: item[0] == "ca.pem"):
        path = directory / filename
        write_atomic(path, data, 0o600 if filename.endswith(".key") else 0o644)
        written[filename] = path
    return written
