"""`nonn bundle RUN_DIR --inventory hosts.yaml --out DIR`: one folder and one .tar.gz per device
of the inventory, each holding exactly what that device needs (its model or the head and the
manifest, its certificate and key and the CA, a systemd unit, an environment file with its flags,
install.sh), plus a bundle of client credentials. The CA's key stays in DIR/ca/, on no device.

A bundle is installed at PREFIX (default /opt/nonn); the unit runs `nonn-edge` there with the
flags of the environment file, file paths relative to its working directory."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError
from .inventory import Device, Inventory, load_inventory

PREFIX = "/opt/nonn"
ENV_FILE = "nonn.env"
CLIENT = "client"


@dataclass(frozen=True)
class Bundle:
    device: str          # the device's name, or "client"
    folder: Path
    archive: Path
    files: tuple[str, ...]


def unit_name(device: Device) -> str:
    return f"nonn-{device.name}.service"


def unit_text(device: Device, prefix: str = PREFIX) -> str:
    """The systemd unit: restarted on failure, a non-root user, the usual hardening."""
    pin = f"CPUAffinity={device.cpu.replace(',', ' ')}\n" if device.cpu and device.role == "gateway" else ""
    return (
        "[Unit]\n"
        f"Description=nonn {device.title} ({device.name})\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={device.user}\n"
        f"Group={device.user}\n"
        f"WorkingDirectory={prefix}/{device.name}\n"
        f"EnvironmentFile={prefix}/{device.name}/{ENV_FILE}\n"
        f"ExecStart={prefix}/venv/bin/nonn-edge {device.role} $NONN_ARGS\n"
        "Restart=on-failure\n"
        "RestartSec=2\n"
        f"{pin}"
        "NoNewPrivileges=yes\n"
        "ProtectSystem=strict\n"
        "ProtectHome=yes\n"
        "PrivateTmp=yes\n"
        "PrivateDevices=yes\n"
        "ProtectKernelTunables=yes\n"
        "ProtectKernelModules=yes\n"
        "ProtectControlGroups=yes\n"
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n"
        "LockPersonality=yes\n"
        "MemoryDenyWriteExecute=no\n"  # ONNX Runtime's kernels are generated at run time on some CPUs
        "CapabilityBoundingSet=\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def install_text(device: Device, version: str, prefix: str = PREFIX) -> str:
    """install.sh: the account, the runtime (a venv with nonn-edge), the files, the unit."""
    home = f"{prefix}/{device.name}"
    return f"""#!/bin/sh
# Install {device.title} ({device.name}) of a nonn deployment on this device; run as root from the unpacked bundle.
# NONN_EDGE_WHEEL=path/to/nonn_edge-{version}-py3-none-any.whl installs that wheel instead of nonn-edge=={version}.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${{PREFIX:-{prefix}}}
id -u {device.user} >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin {device.user}
if [ ! -x "$prefix/venv/bin/nonn-edge" ]; then
    python3 -m venv "$prefix/venv"
    "$prefix/venv/bin/pip" install --disable-pip-version-check "${{NONN_EDGE_WHEEL:-nonn-edge=={version}}}"
fi
install -d -m 0755 "$prefix/{device.name}" "$prefix/{device.name}/tls"
for f in $(cd "$here" && ls | grep -v -e '^install.sh$' -e '^tls$' -e '\\.service$'); do
    install -m 0644 "$here/$f" "$prefix/{device.name}/$f"
done
install -m 0644 "$here/tls/ca.pem" "$here/tls/{device.name}.pem" "$prefix/{device.name}/tls/"
install -m 0600 -o {device.user} "$here/tls/{device.name}.key" "$prefix/{device.name}/tls/"
sed "s#{prefix}#$prefix#g" "$here/{unit_name(device)}" > /etc/systemd/system/{unit_name(device)}
systemctl daemon-reload
systemctl enable --now {unit_name(device)}
echo "installed {unit_name(device)}: systemctl status {unit_name(device)}; journalctl -u {unit_name(device)}"
"""


def _args(device: Device, inventory: Inventory, manifest) -> list[str]:
    """The flags of the device's service, file paths relative to its folder."""
    from nonn.edge.options import GatewayOptions, NodeOptions
    from nonn.edge.tls import TLSFiles

    from .processes import gateway_args, node_args

    tls = TLSFiles(f"tls/{device.name}.pem", f"tls/{device.name}.key", "tls/ca.pem")
    metrics = None if device.metrics_port is None else f"0.0.0.0:{device.metrics_port}"
    listen = f"0.0.0.0:{device.port}"
    if device.role == "node":
        student = manifest.students[device.index]
        options = NodeOptions(tls=tls, log_format="json", metrics_listen=metrics, expect_sha256=student.sha256)
        args = node_args(student.file.name, listen, options, cpu=device.cpu)
    else:
        options = GatewayOptions(tls=tls, log_format="json", metrics_listen=metrics)
        args = gateway_args(manifest.path.name, [n.endpoint for n in inventory.nodes], listen, options)
    return args[1:]  # the subcommand is the unit's


def _quote(args: list[str]) -> str:
    for arg in args:
        if any(c in arg for c in " \t\n\"'\\$%"):
            raise DeployError(f"flag value {arg!r} holds a space or quote; use names and paths without them")
    return " ".join(args)


def _write(path: Path, data: bytes, mode: int) -> None:
    from nonn.edge.files import write_atomic

    write_atomic(path, data, mode)


def _pack(folder: Path, archive: Path) -> None:
    """folder -> archive.tar.gz (atomically), modes kept, owned by root:root inside."""
    def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(folder, arcname=folder.name, filter=reset)
    os.replace(tmp, archive)


def make_bundles(run_dir: str | Path, inventory_path: str | Path, out: str | Path, *, days: int = 825,
                 force: bool = False, log=print) -> list[Bundle]:
    """Write a bundle per device and one for the client into `out`; return them (devices first)."""
    from nonn.edge import identity as ids
    from nonn.edge.certs import issue, new_ca
    from cryptography.hazmat.primitives import serialization

    from nonn.edge.manifest import load_manifest

    from .. import __version__
    from ..rundir import RunDir
    from .local import ensure_export

    rd = RunDir(Path(run_dir))
    k = rd.load_config().students.k
    if isinstance(k, int):
        load_inventory(inventory_path, k)  # a wrong inventory is refused before any export
    manifest_path, _ = ensure_export(rd, log)
    manifest = load_manifest(manifest_path)
    inventory = load_inventory(inventory_path, len(manifest.students))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise DeployError(f"{out} is not empty; pass --force to replace its bundles or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = new_ca(days=days, common_name=f"nonn {inventory.cluster} CA")
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    private = out / "ca"
    private.mkdir(mode=0o700)
    _write(private / "ca.key", ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()), 0o600)
    _write(private / "ca.pem", ca_pem, 0o644)

    bundles = []
    for device in inventory.devices:
        identity = ids.node(inventory.cluster, device.index) if device.role == "node" else ids.gateway(inventory.cluster)
        cert, key = issue(ca_cert, ca_key, identity, hosts=[device.address, device.name], days=days)
        if device.role == "node":
            models = [manifest.students[device.index].file]
        else:
            models = [manifest_path, manifest.head_file]
        files: dict[str, tuple[bytes, int]] = {p.name: (p.read_bytes(), 0o644) for p in models}
        files["tls/ca.pem"] = (ca_pem, 0o644)
        files[f"tls/{device.name}.pem"] = (cert, 0o644)
        files[f"tls/{device.name}.key"] = (key, 0o600)
        files[ENV_FILE] = (f"# flags of {device.title} ({device.name}); paths relative to the unit's "
                           f"WorkingDirectory\nNONN_ARGS={_quote(_args(device, inventory, manifest))}\n".encode(),
                           0o644)
        files[unit_name(device)] = (unit_text(device).encode(), 0o644)
        files["install.sh"] = (install_text(device, __version__).encode(), 0o755)
        bundles.append(_bundle(out, device.name, files))
        log(f"[bundle] {device.title} {device.name} ({device.endpoint}): {bundles[-1].archive}")

    cert, key = issue(ca_cert, ca_key, ids.client(inventory.cluster, CLIENT), hosts=[], days=days)
    gateway = inventory.gateway
    classify = (f"#!/bin/sh\n# Classify images through {gateway.name} with this bundle's client certificate.\n"
                "here=$(cd \"$(dirname \"$0\")\" && pwd)\n"
                f"exec nonn-edge classify --gateway {gateway.endpoint} --tls-ca \"$here/ca.pem\" "
                "--tls-cert \"$here/client.pem\" --tls-key \"$here/client.key\" \"$@\"\n")
    bundles.append(_bundle(out, CLIENT, {"ca.pem": (ca_pem, 0o644), "client.pem": (cert, 0o644),
                                         "client.key": (key, 0o600), "classify.sh": (classify.encode(), 0o755)}))
    log(f"[bundle] client credentials: {bundles[-1].archive}")
    return bundles


def _bundle(out: Path, name: str, files: dict[str, tuple[bytes, int]]) -> Bundle:
    folder = out / name
    for relative, (data, mode) in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, data, mode)
    archive = out / f"{name}.tar.gz"
    _pack(folder, archive)
    return Bundle(name, folder, archive, tuple(sorted(files)))


def read_unit_command(folder: str | Path) -> list[str]:
    """The command line the bundle's unit runs: ExecStart with $NONN_ARGS from the environment
    file (what systemd would run, for a test or a manual start)."""
    folder = Path(folder)
    unit = next(folder.glob("*.service")).read_text()
    exec_start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    env = dict(line.split("=", 1) for line in (folder / ENV_FILE).read_text().splitlines()
               if line and not line.startswith("#"))
    argv = []
    for word in exec_start.split():
        argv += env["NONN_ARGS"].split() if word == "$NONN_ARGS" else [word]
    return argv


def describe(bundles: list[Bundle]) -> str:
    buf = io.StringIO()
    for b in bundles:
        buf.write(f"{b.device:<16} {b.archive}  ({len(b.files)} files)\n")
    return buf.getvalue().rstrip("\n")
