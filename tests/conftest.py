import pytest
from nonn_test_support import tiny_args


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny pipeline run shared by the tests that only read its artifacts."""
    from nonn.cli import main
    out = tmp_path_factory.mktemp("run") / "tiny"
    assert main(["run", "--dataset", "digits", "--k", "2", "--out", str(out), *tiny_args()]) == 0
    return out
