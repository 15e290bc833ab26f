"""Who a certificate speaks for: a role and a name in a SAN URI, spiffe://nonn/<cluster>/<role>/<name>.

`nonn certs` writes one such URI in every leaf (node/0, gateway/gateway, client/client); servers
read the caller's from gRPC's auth context and admit only the roles they serve (see authz.py).
cryptography is imported lazily, only where a certificate is parsed."""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass

from nonn.edge.errors import EdgeError

SCHEME = "spiffe://nonn/"
ROLES = ("node", "gateway", "client")
DEFAULT_CLUSTER = "default"
RERUN_CERTS = "re-run `nonn certs DIR` to make certificates with roles"


def _check_part(value: str, what: str) -> str:
    value = str(value)
    if not value or "/" in value or any(c.isspace() for c in value) or value in (".", ".."):
        raise EdgeError(f"{what} {value!r} must be a non-empty name without '/' or spaces")
    return value


@dataclass(frozen=True)
class Identity:
    """A role ("node", "gateway", "client") held by `name` in `cluster`."""

    cluster: str
    role: str
    name: str

    def __post_init__(self):
        _check_part(self.cluster, "cluster")
        _check_part(self.name, "name")
        if self.role not in ROLES:
            raise EdgeError(f"role {self.role!r} is not one of {', '.join(ROLES)}")

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.cluster}/{self.role}/{self.name}"

    @property
    def short(self) -> str:
        """role/name, as --allow-client takes it."""
        return f"{self.role}/{self.name}"

    @classmethod
    def parse(cls, uri: str) -> Identity | None:
        """The identity in a nonn SAN URI, or None for any other URI."""
        if not isinstance(uri, str) or not uri.startswith(SCHEME):
            return None
        parts = uri[len(SCHEME):].split("/")
        if len(parts) != 3:
            return None
        try:
            return cls(*parts)
        except EdgeError:
            return None


def node(cluster: str, k: int) -> Identity:
    return Identity(cluster, "node", str(int(k)))


def gateway(cluster: str) -> Identity:
    return Identity(cluster, "gateway", "gateway")


def client(cluster: str, name: str = "client") -> Identity:
    return Identity(cluster, "client", name)


def load_certificate(pem: bytes):
    """A cryptography x509.Certificate, or EdgeError."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise EdgeError("the certificate cannot be parsed; pass a .pem made by `nonn certs DIR`") from None


def identities_of(cert) -> list[Identity]:
    """Every nonn identity a certificate (a cryptography Certificate) holds in its SAN URIs."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [i for i in map(Identity.parse, san.get_values_for_type(x509.UniformResourceIdentifier)) if i]


@functools.lru_cache(maxsize=256)
def identity_of_pem(pem: bytes) -> Identity | None:
    """The one nonn identity of a PEM certificate (None: none, or several)."""
    found = identities_of(load_certificate(pem))
    return found[0] if len(found) == 1 else None


def check_validity(cert, path) -> None:
    """EdgeError in one line when `cert` is expired or not yet valid."""
    now = _dt.datetime.now(_dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        raise EdgeError(f"certificate {path} is not valid before {start:%Y-%m-%d %H:%M} UTC; check this machine's "
                        "clock, or re-run `nonn certs DIR`")
    if now > end:
        raise EdgeError(f"certificate {path} expired on {end:%Y-%m-%d %H:%M} UTC; {RERUN_CERTS}")
