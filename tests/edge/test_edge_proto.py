"""The committed generated modules match nonn.proto."""

import pytest

from nonn.edge import _protogen


def test_generated_modules_are_up_to_date(tmp_path):
    pytest.importorskip("grpc_tools")
    for fresh in _protogen.generate(tmp_path):
        committed = _protogen.PACKAGE_DIR / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed.name} is stale; run: python -m nonn.edge._protogen")


def test_services_are_in_package_nonn_v1():
    from nonn.edge import nonn_pb2 as pb

    assert set(pb.DESCRIPTOR.services_by_name) == {"Student", "Gateway"}
    assert pb.DESCRIPTOR.package == "nonn.v1"
    assert pb.DESCRIPTOR.services_by_name["Student"].full_name == "nonn.v1.Student"
