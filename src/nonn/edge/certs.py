"""A private CA and leaf certificates for nodes, the gateway and a client (`nonn certs DIR`).

Each leaf carries its role and identity as a SAN URI, spiffe://nonn/<cluster>/<role>/<name>
(see identity.py): servers admit callers by role, not merely by CA. The CA's private key is
kept apart from the device keys, in DIR/ca/ca.key (a folder of its own, mode 0700), or not
written at all (keep_ca_key=False); devices get ca.pem and their own pair only.

Building blocks for other tools: new_ca() makes a CA, issue() one leaf for any Identity with
extra SANs, write_pair() writes a leaf, load_ca() reads the CA back to issue more later.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from nonn.edge import identity as ids
from nonn.edge.errors import EdgeError
from nonn.edge.files import write_atomic

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_KEY_DIR = "ca"  # DIR/ca/ca.key: the CA's private key, never copied to a device


def _san(hosts: Iterable[str], uris: Iterable[str] = ()):
    from cryptography import x509

    names = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    names += [x509.UniformResourceIdentifier(uri) for uri in dict.fromkeys(uris)]
    return x509.SubjectAlternativeName(names)


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nonn"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _window(days: int, not_before: _dt.datetime | None = None):
    if days < 1:
        raise EdgeError(f"--days must be at least 1, got {days}")
    start = not_before or (_dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5))
    return start, start + _dt.timedelta(days=days)


def new_ca(*, days: int = 825, common_name: str = "nonn private CA"):
    """(certificate, private key) of a new self-signed CA (ECDSA P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    start, until = _window(days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(ca_cert, ca_key, identity: ids.Identity, *, hosts: Iterable[str] = (), extra_sans: Iterable[str] = (),
          days: int = 825, not_before: _dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of one leaf for `identity`, signed by the CA.

    Valid for localhost, 127.0.0.1, ::1 and `hosts` (DNS names or IPs); `extra_sans` are more
    URIs. Servers (node, gateway) may serve and call, clients only call. `not_before` moves
    the validity window (tests of expired certificates)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    start, until = _window(days, not_before)
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    usages = [client] if identity.role == "client" else [server, client]
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"nonn {identity.role} {identity.name}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(_san([*DEFAULT_HOSTS, *hosts], [identity.uri, *extra_sans]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_pair(directory: str | Path, stem: str, cert_pem: bytes, key_pem: bytes) -> dict[str, Path]:
    """Write STEM.pem (0644) and STEM.key (0600) atomically; {filename: path}."""
    directory = Path(directory)
    written = {}
    for filename, data, mode in ((f"{stem}.key", key_pem, 0o600), (f"{stem}.pem", cert_pem, 0o644)):
        write_atomic(directory / filename, data, mode)
        written[filename] = directory / filename
    return written


def load_ca(directory: str | Path):
    """(certificate, private key) of the CA `nonn certs DIR` wrote, to issue more leaves."""
    from cryptography.hazmat.primitives import serialization

    directory = Path(directory)
    key_path = directory / CA_KEY_DIR / "ca.key"
    try:
        cert = ids.load_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise EdgeError(f"cannot read the CA in {directory} ({exc.strerror}: {exc.filename}); "
                        "make one with `nonn certs DIR`") from None
    except ValueError:
        raise EdgeError(f"{key_path} is not a PEM private key; make the CA again with `nonn certs DIR`") from None
    return cert, key


def _directory(directory: str | Path) -> Path:
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise EdgeError(f"{directory} is a file, not a directory; pass a directory for the certificates")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeError(f"cannot create {directory}: {exc.strerror}; pass a writable directory") from None
    return directory


def make_certs(
    directory: str | Path,
    nodes: int,
    *,
    hosts: Iterable[str] = (),
    days: int = 825,
    overwrite: bool = False,
    cluster: str = ids.DEFAULT_CLUSTER,
    clients: Iterable[str] = ("client",),
    keep_ca_key: bool = True,
) -> dict[str, Path]:
    """Create ca, node_<i>, gateway and client certificates (ECDSA P-256) in `directory`.

    Identities: spiffe://nonn/CLUSTER/node/<i>, .../gateway/gateway, .../client/<name> for each
    of `clients` (files client.pem for "client", client_<name>.pem otherwise). Every leaf is
    valid for localhost, 127.0.0.1, ::1 and `hosts`. Keys are written 0600, every file
    atomically; the CA key goes to DIR/ca/ca.key (unless not `keep_ca_key`). Returns
    {name: path} for the written files (the CA key as "ca/ca.key").
    """
    from cryptography.hazmat.primitives import serialization

    if nodes < 1:
        raise EdgeError(f"--nodes must be at least 1, got {nodes}")
    directory = _directory(directory)
    if (directory / "ca.pem").exists() and not overwrite:
        raise EdgeError(f"{directory} already holds ca.pem; pass --force to replace it or choose another directory")
    hosts = list(hosts)
    leaves = [(f"node_{i}", ids.node(cluster, i)) for i in range(nodes)] + [("gateway", ids.gateway(cluster))]
    leaves += [("client" if name == "client" else f"client_{name}", ids.client(cluster, name)) for name in clients]
    ca_cert, ca_key = new_ca(days=days)
    written: dict[str, Path] = {}
    (directory / "ca.key").unlink(missing_ok=True)  # an earlier version's CA key beside the device keys
    if keep_ca_key:
        private = directory / CA_KEY_DIR
        private.mkdir(mode=0o700, exist_ok=True)
        private.chmod(0o700)
        write_atomic(private / "ca.key", _key_pem(ca_key), 0o600)
        written[f"{CA_KEY_DIR}/ca.key"] = private / "ca.key"
    for stem, who in leaves:
        written.update(write_pair(directory, stem, *issue(ca_cert, ca_key, who, hosts=hosts, days=days)))
    # ca.pem goes last: its presence means the set is complete.
    write_atomic(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    written["ca.pem"] = directory / "ca.pem"
    return written


def has_roles(cert_path: str | Path) -> bool:
    """Whether a certificate carries a nonn identity (made by this version of `nonn certs`)."""
    try:
        return ids.identity_of_pem(Path(cert_path).read_bytes()) is not None
    except (OSError, EdgeError):
        return False
