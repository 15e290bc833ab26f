"""TLS on every link: mutual TLS between client, gateway and node processes."""

import grpc
import numpy as np
import pytest
from edge_support import IMAGE, reference

from nonn.edge.client import classify
from nonn.edge.errors import EdgeError, GatewayError
from nonn.edge.tls import TLSFiles


@pytest.fixture
def mtls_gateway(gateways, processes, artifacts, pki):
    nodes = []
    for k, model in enumerate(artifacts.students):
        _, address = processes.node(model, "--tls-cert", str(pki / f"node_{k}.pem"), "--tls-key",
                                    str(pki / f"node_{k}.key"), "--tls-ca", str(pki / "ca.pem"), insecure=False)
        nodes.append(address)
    tls = TLSFiles(pki / "gateway.pem", pki / "gateway.key", pki / "ca.pem")
    return gateways(artifacts.manifest, nodes, tls=tls, deadline_s=5.0), nodes


def test_mutual_tls_end_to_end_and_refusals(mtls_gateway, pki, other_pki, artifacts):
    address, nodes = mtls_gateway
    good = TLSFiles(pki / "client.pem", pki / "client.key", pki / "ca.pem")
    result = classify(address, IMAGE, tls=good, timeout_s=10)
    np.testing.assert_allclose(result["logits"], reference(artifacts), atol=1e-5)

    refused = {
        "no client certificate": TLSFiles(None, None, pki / "ca.pem"),
        "certificate from another CA": TLSFiles(other_pki / "client.pem", other_pki / "client.key", pki / "ca.pem"),
    }
    for why, tls in refused.items():
        with pytest.raises(GatewayError) as info:
            classify(address, IMAGE, tls=tls, timeout_s=5)
        assert info.value.code == "UNAVAILABLE", why
    with pytest.raises(GatewayError):  # a client that does not trust the gateway's CA
        classify(address, IMAGE, tls=TLSFiles(other_pki / "client.pem", other_pki / "client.key",
                                              other_pki / "ca.pem"), timeout_s=5)
    with pytest.raises(GatewayError):  # plaintext against a TLS server
        classify(address, IMAGE, insecure=True, timeout_s=5)

    # the nodes themselves refuse a caller without a certificate from the CA
    from nonn.edge import nonn_pb2_grpc as pb_grpc
    from nonn.edge.tensors import to_tensor

    creds = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    with grpc.secure_channel(nodes[0], creds) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.StudentStub(channel).Features(to_tensor(np.zeros((1, 3, 8, 8), np.float32)), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # and the working client still works afterwards
    assert classify(address, IMAGE, tls=good, timeout_s=10)["label"] == result["label"]


def test_server_side_tls_without_client_certificates(gateways, processes, artifacts, pki):
    nodes = [processes.node(model, "--tls-cert", str(pki / f"node_{k}.pem"), "--tls-key", str(pki / f"node_{k}.key"),
                            insecure=False)[1] for k, model in enumerate(artifacts.students)]
    address = gateways(artifacts.manifest, nodes, tls=TLSFiles(pki / "gateway.pem", pki / "gateway.key"),
                       nodes_ca=pki / "ca.pem")
    result = classify(address, IMAGE, tls=TLSFiles(ca=pki / "ca.pem"), timeout_s=10)
    np.testing.assert_allclose(result["logits"], reference(artifacts), atol=1e-5)


def test_credential_errors_name_the_fix(artifacts, pki):
    from nonn.edge.node import serve_node

    with pytest.raises(EdgeError, match="not both"):
        serve_node(artifacts.students[0], tls=(pki / "node_0.pem", pki / "node_0.key", None), insecure=True)
    with pytest.raises(EdgeError, match="needs both --tls-cert and --tls-key"):
        serve_node(artifacts.students[0], tls=(pki / "node_0.pem", None, None))
    with pytest.raises(EdgeError, match="cannot read key"):
        serve_node(artifacts.students[0], tls=(pki / "node_0.pem", pki / "missing.key", None))
    with pytest.raises(EdgeError, match="is not PEM"):
        serve_node(artifacts.students[0], tls=(pki / "node_0.pem", artifacts.manifest, None))
