"""Mutual TLS authorises roles: nodes take only the gateway, the gateway's Classify only clients
(and --allow-client identities); certificates without roles, or out of their validity, are refused."""

import datetime as dt

import grpc
import numpy as np
import pytest
from edge_support import IMAGE

from nonn.edge import identity as ids
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.certs import issue, load_ca, write_pair
from nonn.edge.client import classify, to_message
from nonn.edge.errors import EdgeError, GatewayError
from nonn.edge.tensors import to_tensor
from nonn.edge.tls import TLSFiles, channel_credentials

x509 = pytest.importorskip("cryptography.x509")


def credentials(pki, name):
    return channel_credentials(TLSFiles(pki / f"{name}.pem", pki / f"{name}.key", pki / "ca.pem"), False)


def call_node(address, creds):
    with grpc.secure_channel(address, creds) as channel:
        return pb_grpc.StudentStub(channel).Features(to_tensor(np.zeros((1, 3, 8, 8), np.float32)), timeout=10)


def call_gateway(address, creds):
    with grpc.secure_channel(address, creds) as channel:
        return pb_grpc.GatewayStub(channel).Classify(to_message(IMAGE), timeout=10)


@pytest.fixture
def mtls(gateways, processes, artifacts, pki):
    def start(**gateway_fields):
        nodes = [processes.node(model, "--tls-cert", str(pki / f"node_{k}.pem"), "--tls-key", str(pki / f"node_{k}.key"),
                                "--tls-ca", str(pki / "ca.pem"), insecure=False)[1]
                 for k, model in enumerate(artifacts.students)]
        tls = TLSFiles(pki / "gateway.pem", pki / "gateway.key", pki / "ca.pem")
        return gateways(artifacts.manifest, nodes, tls=tls, deadline_s=5.0, **gateway_fields), nodes
    return start


def test_certificates_carry_their_role_and_identity(pki):
    for stem, uri in (("node_0", "spiffe://nonn/default/node/0"), ("gateway", "spiffe://nonn/default/gateway/gateway"),
                      ("client", "spiffe://nonn/default/client/client")):
        cert = x509.load_pem_x509_certificate((pki / f"{stem}.pem").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]


def test_roles_are_enforced_with_permission_denied(mtls, pki):
    gateway, nodes = mtls()
    assert call_gateway(gateway, credentials(pki, "client")).label >= 0  # the client through the gateway works
    for name in ("client", "node_1"):  # but neither a client nor another node may call a node directly
        with pytest.raises(grpc.RpcError) as info:
            call_node(nodes[0], credentials(pki, name))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "takes the gateway role" in info.value.details()
    for name in ("node_0", "gateway"):  # nodes (and the gateway itself) are not clients of Classify
        with pytest.raises(grpc.RpcError) as info:
            call_gateway(gateway, credentials(pki, name))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "takes the client role" in info.value.details()
    # the classify client reports it in one line
    with pytest.raises(GatewayError, match="PERMISSION_DENIED"):
        classify(gateway, IMAGE, tls=TLSFiles(pki / "node_0.pem", pki / "node_0.key", pki / "ca.pem"), timeout_s=10)


def test_allow_client_admits_another_identity(mtls, pki):
    gateway, _ = mtls(allow_client=("node/0",))
    assert call_gateway(gateway, credentials(pki, "node_0")).label >= 0
    with pytest.raises(grpc.RpcError) as info:
        call_gateway(gateway, credentials(pki, "node_1"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "--allow-client node/0" in info.value.details()


def _roleless(pki, tmp_path, stem="old"):
    """A leaf signed by the same CA, as an earlier `nonn certs` made it: no SAN URI."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert, ca_key = load_ca(pki)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nonn client")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_pair(tmp_path, stem, cert.public_bytes(serialization.Encoding.PEM), key_pem)
    (tmp_path / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    return tmp_path


def test_certificates_without_roles_are_refused_saying_rerun_certs(mtls, pki, tmp_path, artifacts):
    gateway, nodes = mtls()
    old = _roleless(pki, tmp_path)
    for call, address in ((call_gateway, gateway), (call_node, nodes[0])):
        with pytest.raises(grpc.RpcError) as info:
            call(address, credentials(old, "old"))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "nonn certs" in info.value.details()
    from nonn.edge.node import serve_node

    with pytest.raises(EdgeError, match="no nonn role.*nonn certs"):  # and a server will not start with one
        serve_node(artifacts.students[0], tls=(old / "old.pem", old / "old.key", old / "ca.pem"))


@pytest.mark.parametrize("shift, words", [(-30, "expired"), (+30, "not valid before")])
def test_certificates_out_of_their_validity_are_refused_at_start(pki, tmp_path, artifacts, shift, words):
    from nonn.edge.node import serve_node

    ca_cert, ca_key = load_ca(pki)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=shift)
    write_pair(tmp_path, "node", *issue(ca_cert, ca_key, ids.node("default", 0), days=1, not_before=start))
    with pytest.raises(EdgeError, match=words) as info:
        serve_node(artifacts.students[0], tls=(tmp_path / "node.pem", tmp_path / "node.key", pki / "ca.pem"))
    assert "\n" not in str(info.value)


def test_the_ca_key_is_kept_apart_from_the_device_keys(pki, tmp_path):
    from nonn.edge.certs import make_certs

    assert not (pki / "ca.key").exists() and (pki / "ca" / "ca.key").is_file()
    assert (pki / "ca").stat().st_mode & 0o077 == 0
    written = make_certs(tmp_path, nodes=1, keep_ca_key=False, cluster="lab", clients=("client", "camera"))
    assert not (tmp_path / "ca").exists() and not (tmp_path / "ca.key").exists()
    assert {"client_camera.pem", "node_0.key"} <= set(written)
    cert = x509.load_pem_x509_certificate((tmp_path / "client_camera.pem").read_bytes())
    assert ids.identities_of(cert) == [ids.Identity("lab", "client", "camera")]


def test_another_cluster_is_refused(mtls, tmp_path, pki):
    gateway, _ = mtls()
    ca_cert, ca_key = load_ca(pki)  # same CA, another cluster's client
    write_pair(tmp_path, "client", *issue(ca_cert, ca_key, ids.client("other")))
    (tmp_path / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    with pytest.raises(grpc.RpcError) as info:
        call_gateway(gateway, credentials(tmp_path, "client"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "cluster" in info.value.details()
