"""Fixtures for the edge runtime: tiny ONNX artifacts, certificates, node processes that are
always killed at teardown, and in-process gateways that are always stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edge_support import SIZES, Artifacts, Processes, build_artifacts


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    return build_artifacts(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def pixel_artifacts(tmp_path_factory) -> Artifacts:
    """The same models, carrying their normalisation: the gateway sends the nodes uint8 pixels."""
    return build_artifacts(tmp_path_factory.mktemp("onnx_pixels"), node_pixels=True)


@pytest.fixture(scope="session")
def pixel_nodes(pixel_artifacts, tmp_path_factory):
    """Two plaintext nodes (torch blocked) serving the pixel students, for the whole session."""
    procs = Processes(tmp_path_factory.mktemp("pixel_nodes"))
    try:
        yield [procs.node(model)[1] for model in pixel_artifacts.students]
    finally:
        procs.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    from nonn.edge.certs import make_certs

    directory = tmp_path_factory.mktemp("pki")
    make_certs(directory, nodes=len(SIZES))
    return directory


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory) -> Path:
    from nonn.edge.certs import make_certs

    directory = tmp_path_factory.mktemp("other_pki")
    make_certs(directory, nodes=1)
    return directory


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.close()


@pytest.fixture(scope="session")
def shared_nodes(artifacts, tmp_path_factory):
    """Two plaintext nodes (torch blocked) serving the students, for the whole session."""
    procs = Processes(tmp_path_factory.mktemp("shared_nodes"))
    try:
        addresses = [procs.node(model, "--max-message-bytes", "65536")[1] for model in artifacts.students]
        yield addresses
    finally:
        procs.close()


@pytest.fixture
def gateways():
    """Start in-process gateways with serve_gateway; all are stopped at teardown."""
    from nonn.edge.gateway import serve_gateway

    started = []

    def start(*args, **kwargs):
        server, port = serve_gateway(*args, **kwargs)
        started.append(server)
        return f"127.0.0.1:{port}"

    try:
        yield start
    finally:
        for server in started:
            server.stop(0)
