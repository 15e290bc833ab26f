"""gRPC credentials from PEM files: TLS on every link, mutual TLS when a CA is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from nonn.edge.addresses import check_address
from nonn.edge.channels import open_channel  # noqa: F401 (its old home)
from nonn.edge.errors import EdgeError

INSECURE_HINT = "pass --tls-cert/--tls-key (make them with `nonn certs DIR`) or --insecure"


@dataclass(frozen=True)
class TLSFiles:
    """PEM paths. A server with `ca` requires client certificates signed by it (mTLS);
    a client uses `ca` to verify the server and presents `cert`/`key` when given."""

    cert: str | Path | None = None
    key: str | Path | None = None
    ca: str | Path | None = None

    @classmethod
    def of(cls, tls: TLSFiles | tuple | None) -> TLSFiles | None:
        """Accept a TLSFiles, a (cert, key, ca) tuple or None."""
        if tls is None or isinstance(tls, TLSFiles):
            return tls
        return cls(*tls)


def read_pem(path: str | Path, what: str) -> bytes:
    """The bytes of a PEM file, or EdgeError naming the flag to fix."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EdgeError(f"cannot read {what} {path}: {exc.strerror}; check --tls-{what}") from None
    if b"-----BEGIN" not in data:
        raise EdgeError(f"{what} file {path} is not PEM; pass a file made by `nonn certs DIR`")
    return data


def server_credentials(tls: TLSFiles | tuple | None, insecure: bool) -> tuple[grpc.ServerCredentials | None, str]:
    """(credentials or None for plaintext, mode name "tls" | "mtls" | "insecure")."""
    tls = TLSFiles.of(tls)
    if tls is not None and (tls.cert or tls.key or tls.ca):
        if insecure:
            raise EdgeError("pass either --tls-cert/--tls-key or --insecure, not both")
        if not (tls.cert and tls.key):
            raise EdgeError("a TLS server needs both --tls-cert and --tls-key (make them with `nonn certs DIR`)")
        pair = (read_pem(tls.key, "key"), read_pem(tls.cert, "cert"))
        ca = read_pem(tls.ca, "ca") if tls.ca else None
        check_pair(pair[1], pair[0], tls.cert, tls.key, need_role=ca is not None)
        creds = grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)
        return creds, "mtls" if ca else "tls"
    if not insecure:
        raise EdgeError(INSECURE_HINT)
    return None, "insecure"


def check_pair(cert_pem: bytes, key_pem: bytes, cert_path, key_path, *, need_role: bool = False):
    """The certificate's nonn Identity (or None), after checking, each with a one-line EdgeError,
    that it parses, is valid now, matches the key, and (with `need_role`) holds a role."""
    from cryptography.hazmat.primitives import serialization

    from nonn.edge import identity as ids

    cert = ids.load_certificate(cert_pem)
    ids.check_validity(cert, cert_path)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise EdgeError(f"key {key_path} is not an unencrypted PEM private key; "
                        "pass the .key made with the certificate by `nonn certs DIR`") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise EdgeError(f"the key {key_path} does not match the certificate {cert_path}; "
                        "pass the .key made with that .pem")
    found = ids.identities_of(cert)
    if need_role and len(found) != 1:
        raise EdgeError(f"certificate {cert_path} has no nonn role (made by an older `nonn certs`?); "
                        f"{ids.RERUN_CERTS}")
    return found[0] if len(found) == 1 else None


def server_identity(tls: TLSFiles | tuple | None):
    """The nonn Identity of a mutual-TLS server's own certificate (None without a CA)."""
    tls = TLSFiles.of(tls)
    if tls is None or not (tls.ca and tls.cert and tls.key):
        return None
    return check_pair(read_pem(tls.cert, "cert"), read_pem(tls.key, "key"), tls.cert, tls.key, need_role=True)


def channel_credentials(tls: TLSFiles | tuple | None, insecure: bool) -> grpc.ChannelCredentials | None:
    """Credentials to reach a server (None for plaintext); trust `ca` or the system roots."""
    tls = TLSFiles.of(tls)
    if tls is not None and (tls.cert or tls.key or tls.ca):
        if insecure:
            raise EdgeError("pass either the --tls-* options or --insecure, not both")
        if bool(tls.cert) != bool(tls.key):
            raise EdgeError("a client certificate needs both --tls-cert and --tls-key")
        if tls.cert:
            check_pair(read_pem(tls.cert, "cert"), read_pem(tls.key, "key"), tls.cert, tls.key)
        return grpc.ssl_channel_credentials(
            root_certificates=read_pem(tls.ca, "ca") if tls.ca else None,
            private_key=read_pem(tls.key, "key") if tls.key else None,
            certificate_chain=read_pem(tls.cert, "cert") if tls.cert else None,
        )
    if not insecure:
        raise EdgeError("pass --tls-ca (and --tls-cert/--tls-key for mutual TLS) or --insecure")
    return None


def add_port(server: grpc.Server, listen: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind `listen` and return the bound port, or EdgeError when it cannot be bound."""
    check_address(listen, "--listen")
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise EdgeError(f"cannot listen on {listen}: the address is in use or not on this machine; "
                        "choose another --listen HOST:PORT")
    return port
