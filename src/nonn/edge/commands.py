"""argparse subcommands `node`, `gateway`, `classify` and `certs`; see register()."""

from __future__ import annotations

import argparse
import functools
import sys

from nonn.edge.errors import EdgeError, GatewayError
from nonn.edge.options import GatewayOptions, NodeOptions


def _user_errors(handler):
    """Print EdgeError as one line and exit 2; a gateway's remote failure exits 1."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except GatewayError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2 if exc.code == "INVALID_ARGUMENT" else 1
        except EdgeError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2
        except KeyboardInterrupt:
            return 130

    return wrapper


def _tls(args: argparse.Namespace):
    from nonn.edge.tls import TLSFiles

    return TLSFiles(args.tls_cert, args.tls_key, args.tls_ca)


@_user_errors
def node_command(args: argparse.Namespace) -> int:
    from nonn.edge.grpc_io import quiet_grpc_logs, use_polling_io

    use_polling_io()  # before grpc is imported
    quiet_grpc_logs()
    if args.cpu is not None:
        from nonn.edge.affinity import parse_cpus, pin_process

        pin_process(parse_cpus(args.cpu))  # before any thread starts: they all inherit it
    from nonn.edge.node import run_node

    return run_node(args.model, args.listen, NodeOptions.from_args(args))


@_user_errors
def gateway_command(args: argparse.Namespace) -> int:
    from nonn.edge.grpc_io import quiet_grpc_logs, use_polling_io

    use_polling_io()  # before grpc is imported
    quiet_grpc_logs()
    from nonn.edge.gateway import run_gateway

    return run_gateway(args.manifest, args.nodes, args.listen, GatewayOptions.from_args(args))


@_user_errors
def classify_command(args: argparse.Namespace) -> int:
    from nonn.edge.grpc_io import quiet_grpc_logs

    quiet_grpc_logs()
    if not args.timeout_s > 0:
        raise EdgeError(f"--timeout-s must be a positive number of seconds, got {args.timeout_s:g}")
    from nonn.edge.addresses import check_address
    from nonn.edge.classify_files import classify_files

    check_address(args.gateway, "--gateway", allow_any_port=False)
    return classify_files(args, _tls(args))


@_user_errors
def certs_command(args: argparse.Namespace) -> int:
    from nonn.edge.certs import make_certs

    written = make_certs(args.dir, args.nodes, hosts=args.host, days=args.days, overwrite=args.force,
                         cluster=args.cluster, clients=args.client or ("client",), keep_ca_key=not args.no_ca_key)
    print(f"wrote {len(written)} files to {args.dir}: {', '.join(sorted(written))}")
    if not args.no_ca_key:
        print(f"the CA key is {args.dir}/ca/ca.key: keep it off the devices (they need ca.pem and their own "
              ".pem/.key)")
    return 0


def _add_tls(parser: argparse.ArgumentParser, client: bool = False) -> None:
    group = parser.add_argument_group("security (TLS is required unless --insecure)")
    if client:
        group.add_argument("--tls-ca", metavar="PEM", help="CA that signed the gateway's certificate")
        group.add_argument("--tls-cert", metavar="PEM", help="client certificate, for mutual TLS")
        group.add_argument("--tls-key", metavar="PEM", help="client key, for mutual TLS")
    else:
        group.add_argument("--tls-cert", metavar="PEM", help="this server's certificate")
        group.add_argument("--tls-key", metavar="PEM", help="this server's private key")
        group.add_argument("--tls-ca", metavar="PEM",
                           help="require client certificates signed by this CA (mutual TLS)")
    group.add_argument("--insecure", action="store_true", help="plaintext; only on a trusted network")


def _add_server(parser: argparse.ArgumentParser, port: int, options: type[NodeOptions | GatewayOptions]) -> None:
    parser.add_argument("--listen", default=f"127.0.0.1:{port}", metavar="HOST:PORT",
                        help="address to bind; 0.0.0.0:PORT to accept other machines, port 0 for any "
                             "(default: %(default)s)")
    options.add_flags(parser, "intra_op_threads", "max_message_bytes")


def register(subparsers) -> None:
    """Add node, gateway, classify and certs to an argparse subparsers object."""
    node = subparsers.add_parser("node", help="serve one student model to the gateway",
                                 description="Serve one student ONNX model over gRPC (nonn.v1.Student).")
    node.add_argument("--model", required=True, metavar="ONNX", help="student_<k>.onnx")
    _add_server(node, 50051, NodeOptions)
    NodeOptions.add_flags(node, "delay_ms", "max_batch_images", "expect_sha256")
    node.add_argument("--cpu", metavar="CORES",
                      help="run only on these cores, like 1 or 0-1 (Linux): several nodes on one machine then "
                           "each keep a core and its caches, as on their own boards")
    _add_tls(node)
    NodeOptions.add_flags(node.add_argument_group("operations"), "metrics_listen", "log_format")
    node.set_defaults(func=node_command)

    gateway = subparsers.add_parser("gateway", help="serve classification by fanning out to the nodes",
                                    description="Send each image to all nodes at once, run the head, answer.")
    gateway.add_argument("--manifest", required=True, metavar="JSON", help="onnx/manifest.json")
    gateway.add_argument("--nodes", required=True, metavar="HOST:PORT,...",
                         help="one address per student, in partition order")
    _add_server(gateway, 50050, GatewayOptions)
    GatewayOptions.add_flags(gateway, "deadline_s", "degraded")
    _add_tls(gateway)
    GatewayOptions.add_flags(gateway, "nodes_ca", "max_batch", "allow_client")
    GatewayOptions.add_flags(gateway.add_argument_group("operations"), "metrics_listen", "log_format", "mqtt",
                             "mqtt_user", "mqtt_password_file", "mqtt_ca", "mqtt_cert", "mqtt_key", "mqtt_queue")
    gateway.set_defaults(func=gateway_command)

    classify = subparsers.add_parser("classify", help="classify images through a gateway",
                                     description="Send images (.npy, .png, .jpg) to a gateway; one line per file.")
    classify.add_argument("file", metavar="FILE", nargs="+",
                          help="images (.npy, .png, .jpg or .jpeg) or folders of them")
    classify.add_argument("--no-resize", action="store_true",
                          help="send PNG/JPEG pixels as they are, instead of resizing the short side and "
                               "centre-cropping to the model's input (the gateway then refuses other sizes)")
    classify.add_argument("--gateway", required=True, metavar="HOST:PORT")
    classify.add_argument("--verbose", "-v", action="store_true",
                          help="for one file, also each node's compute and round-trip times, and the bytes")
    classify.add_argument("--json", action="store_true", help="print the whole prediction as JSON (one object per line for several files)")
    classify.add_argument("--timeout-s", type=float, default=5.0, metavar="S", help="default: 5")
    classify.add_argument("--layout", choices=("HWC", "CHW", "HW"), default=None,
                          help="pixel layout of a .npy file when its shape is ambiguous")
    _add_tls(classify, client=True)
    classify.set_defaults(func=classify_command)

    certs = subparsers.add_parser("certs", help="make a private CA and certificates for nodes and gateway",
                                  description="Write ca, node_<i>, gateway and client .pem/.key files.")
    certs.add_argument("dir", metavar="DIR")
    certs.add_argument("--nodes", type=int, required=True, metavar="N", help="number of node certificates")
    certs.add_argument("--host", action="append", default=[], metavar="NAME",
                       help="extra hostname or IP the certificates are valid for (repeatable)")
    certs.add_argument("--days", type=int, default=825, help="validity (default: 825)")
    certs.add_argument("--force", action="store_true", help="replace an existing CA in DIR")
    certs.add_argument("--cluster", default="default", metavar="NAME",
                       help="cluster name in every identity, spiffe://nonn/NAME/<role>/<name> (default: %(default)s)")
    certs.add_argument("--client", action="append", default=[], metavar="NAME",
                       help="a client certificate for identity client/NAME (repeatable; default: one named client)")
    certs.add_argument("--no-ca-key", action="store_true",
                       help="do not keep the CA's private key (no more certificates can be issued from it)")
    certs.set_defaults(func=certs_command)
