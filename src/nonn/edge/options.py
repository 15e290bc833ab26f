"""Every setting of a node and of a gateway, defined once: its default, its meaning, its flag.

serve_node/run_node and serve_gateway/run_gateway take a NodeOptions/GatewayOptions; the
`node` and `gateway` commands make their flags from the same fields (add_flags) and read
them back (from_args); deploy turns options into command lines again (cli_args). Only the
standard library is imported here: the CLI is built before grpc may be loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from nonn.edge.tls import TLSFiles

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_BATCH = 16  # images per message to one node


def _option(default, help: str, flag: str | None = None, *, metavar: str | None = None, scale: float = 1.0,
            type=None):
    """A field with its documentation; `flag` (value = field x `scale`) when the CLI sets it."""
    return field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar, "scale": scale,
                                            "type": type})


_TLS_HELP = ("(cert, key, ca or None) or a TLSFiles: serve with cert/key; a CA makes clients present a "
             "certificate it signed (mutual TLS); set by --tls-cert, --tls-key, --tls-ca")
_INSECURE_HELP = "plaintext; only on a trusted network (--insecure)"
_MESSAGE_HELP = "largest message accepted (default: 16 MiB)"
_THREADS_HELP = "ONNX Runtime intra-op threads (default: %(default)s)"
_METRICS_HELP = "serve Prometheus metrics over HTTP on this address, e.g. 0.0.0.0:9100 (default: off)"
_LOG_HELP = "text, or json: one JSON object per line for each event (default: %(default)s)"


class _Options:
    """What both option classes share: building, flags, command lines."""

    @classmethod
    def of(cls, options: Self | None = None, **fields) -> Self:
        """`options` (or the defaults) with `fields` replaced."""
        if options is None:
            return cls(**fields)
        if not isinstance(options, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(options).__name__}")
        return dataclasses.replace(options, **fields) if fields else options

    @classmethod
    def flags(cls) -> dict[str, dataclasses.Field]:
        """Field name -> field, for the fields the command line sets with a flag of their own."""
        return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("flag")}

    @classmethod
    def add_flags(cls, parser, *names: str) -> None:
        """Add the flags of these fields to an argparse parser or group, defaults and help from the fields."""
        flags = cls.flags()
        for name in names:
            f = flags[name]
            meta = f.metadata
            if f.type in (bool, "bool"):
                parser.add_argument(meta["flag"], action="store_true", help=meta["help"])
                continue
            if isinstance(f.default, tuple):
                parser.add_argument(meta["flag"], action="append", type=meta["type"] or str, default=[],
                                    metavar=meta["metavar"], help=meta["help"])
                continue
            kind = meta["type"] or type(f.default)
            default = f.default
            if default is not None and meta["scale"] != 1.0:
                default = kind(default * meta["scale"])
            parser.add_argument(meta["flag"], type=kind, default=default, metavar=meta["metavar"], help=meta["help"])

    @classmethod
    def from_args(cls, args) -> Self:
        """The options an argparse namespace holds (flags absent from it keep their defaults)."""
        from nonn.edge.tls import TLSFiles

        values: dict[str, Any] = {}
        for name, f in cls.flags().items():
            dest = _dest(f.metadata["flag"])
            if hasattr(args, dest):
                value = getattr(args, dest)
                scale = f.metadata["scale"]
                values[name] = value / scale if value is not None and scale != 1.0 else value
                if isinstance(f.default, tuple):
                    values[name] = tuple(value or ())
        if hasattr(args, "insecure"):
            values["insecure"] = bool(args.insecure)
        if hasattr(args, "tls_cert"):
            values["tls"] = TLSFiles(args.tls_cert, args.tls_key, args.tls_ca)
        return cls(**values)

    def cli_args(self) -> list[str]:
        """The `node`/`gateway` flags that set these options (defaults are left out)."""
        args = security_args(self.tls, self.insecure)
        flags = self.flags()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("tls", "insecure") or value == f.default:
                continue
            if f.name not in flags:
                raise ValueError(f"{type(self).__name__}.{f.name} has no command-line flag; "
                                 "leave it at its default for a child process")
            flag, scale = f.metadata["flag"], f.metadata["scale"]
            if isinstance(value, bool):
                if value:
                    args.append(flag)
            elif isinstance(value, (tuple, list)):
                for item in value:
                    args += [flag, str(item)]
            else:
                args += [flag, _text(value * scale if scale != 1.0 else value)]
        return args


@dataclass(frozen=True)
class NodeOptions(_Options):
    """How a node serves its student (everything but the model and the address)."""

    tls: TLSFiles | tuple | None = _option(None, _TLS_HELP)
    insecure: bool = _option(False, _INSECURE_HELP)
    max_message_bytes: int = _option(DEFAULT_MAX_MESSAGE_BYTES, _MESSAGE_HELP, "--max-message-bytes", metavar="N")
    intra_op_threads: int = _option(1, _THREADS_HELP, "--threads")
    delay_ms: float = _option(0.0, "emulated link delay, applied to each request and each reply, so a call "
                                   "gains 2 x MS (default: %(default)g)", "--delay-ms", metavar="MS")
    workers: int = _option(4, "model runs at once, and threads serving unary calls (no flag)")
    max_batch_images: int | None = _option(None, "images one request may carry; larger ones are refused "
                                                 "RESOURCE_EXHAUSTED before any compute (default: derived from "
                                                 "the model and --max-message-bytes, see the banner)",
                                           "--max-batch-images", metavar="N", type=int)
    expect_sha256: str | None = _option(None, "refuse to start unless the model file has this SHA-256 (the "
                                              "manifest's)", "--expect-sha256", metavar="HEX", type=str)
    metrics_listen: str | None = _option(None, _METRICS_HELP, "--metrics-listen", metavar="HOST:PORT", type=str)
    log_format: str = _option("text", _LOG_HELP, "--log-format", metavar="text|json")


@dataclass(frozen=True)
class GatewayOptions(_Options):
    """How a gateway serves (everything but the manifest, the node addresses and its own address)."""

    deadline_s: float = _option(1.0, "time allowed for all nodes to answer (default: %(default)g)",
                                "--deadline-ms", metavar="MS", scale=1000.0)
    degraded: bool = _option(False, "zero-fill the features of a missing node instead of failing", "--degraded")
    tls: TLSFiles | tuple | None = _option(None, _TLS_HELP + "; the gateway presents cert/key to the nodes too")
    insecure: bool = _option(False, _INSECURE_HELP)
    nodes_ca: str | Path | None = _option(None, "CA to verify the nodes with (default: --tls-ca)", "--nodes-ca",
                                          metavar="PEM", type=str)
    max_message_bytes: int = _option(DEFAULT_MAX_MESSAGE_BYTES, _MESSAGE_HELP, "--max-message-bytes", metavar="N")
    intra_op_threads: int = _option(1, _THREADS_HELP, "--threads")
    workers: int = _option(8, "the server takes up to 16 x workers calls at once (no flag)")
    max_batch: int = _option(MAX_BATCH, "images that waited while a node was busy go to it together, up to N per "
                                        "message; 1 sends every image alone (default: %(default)s)",
                             "--max-batch", metavar="N")
    allow_client: tuple[str, ...] = _option((), "with mutual TLS, Classify takes client certificates and also "
                                                "these identities: role/name (node/0) or a spiffe:// URI "
                                                "(repeatable)", "--allow-client", metavar="NAME", type=str)
    metrics_listen: str | None = _option(None, _METRICS_HELP, "--metrics-listen", metavar="HOST:PORT", type=str)
    log_format: str = _option("text", _LOG_HELP, "--log-format", metavar="text|json")
    mqtt: str | None = _option(None, "publish each prediction as JSON to mqtt://HOST:PORT/TOPIC (mqtts:// for TLS), "
                                     "best-effort: never holds a classification", "--mqtt", metavar="URL", type=str)
    mqtt_user: str | None = _option(None, "MQTT user name", "--mqtt-user", metavar="NAME", type=str)
    mqtt_password_file: str | None = _option(None, "file holding the MQTT password", "--mqtt-password-file",
                                             metavar="FILE", type=str)
    mqtt_ca: str | None = _option(None, "CA that signed the broker's certificate (turns TLS on)", "--mqtt-ca",
                                  metavar="PEM", type=str)
    mqtt_cert: str | None = _option(None, "client certificate for the broker", "--mqtt-cert", metavar="PEM", type=str)
    mqtt_key: str | None = _option(None, "client key for the broker", "--mqtt-key", metavar="PEM", type=str)
    mqtt_queue: int = _option(1000, "messages waiting for the broker at most; more are dropped and counted "
                                    "(default: %(default)s)", "--mqtt-queue", metavar="N")


def security_args(tls: TLSFiles | tuple | None, insecure: bool) -> list[str]:
    """--tls-cert/--tls-key/--tls-ca for the PEM files that are set, and --insecure."""
    args = []
    if tls is not None:
        cert, key, ca = (tls.cert, tls.key, tls.ca) if hasattr(tls, "cert") else tuple(tls)
        for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
            if path:
                args += [flag, str(path)]
    if insecure:
        args.append("--insecure")
    return args


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _text(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(round(value, 9))
    return str(value)
