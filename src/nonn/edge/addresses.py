"""HOST:PORT addresses, checked strictly before gRPC sees them: gRPC itself takes a port
modulo 65536, picks a random port for 65536 and serves on 443 when the port is missing."""

from __future__ import annotations

import ipaddress

from nonn.edge.errors import EdgeError


def split_address(address: str, what: str = "--listen") -> tuple[str, int]:
    """(host, port) of "HOST:PORT" or "[IPv6]:PORT"; EdgeError naming `what` otherwise.
    The port must be written, and lie in 0..65535 (0: any free port)."""
    text = str(address).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        raise EdgeError(f"{what} {address!r} has no port; write HOST:PORT, like 127.0.0.1:50051")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise EdgeError(f"{what} {address!r} is ambiguous; write an IPv6 host in brackets, like [::1]:50051")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EdgeError(f"{what} {address!r} has port {port!r}; a port is a number from 0 to 65535")
    if not host or any(c.isspace() for c in host):
        raise EdgeError(f"{what} {address!r} has no valid host; write HOST:PORT, like 127.0.0.1:50051")
    return host, int(port)


def check_address(address: str, what: str = "--listen", *, allow_any_port: bool = True) -> str:
    """`address` itself when it is a valid HOST:PORT (port 0 only with `allow_any_port`)."""
    _, port = split_address(address, what)
    if port == 0 and not allow_any_port:
        raise EdgeError(f"{what} {address!r} has port 0; give the port the server listens on")
    return str(address).strip()


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
