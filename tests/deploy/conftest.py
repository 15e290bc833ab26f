"""A copy of the tiny trained run, deployed once (mutual TLS, real processes) for the module's tests."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from deploy_support import copy_run

from nonn.cli import main


@pytest.fixture(scope="session")
def deployed(tiny_run, tmp_path_factory):
    """(run directory, deploy.json, stdout) of one `nonn deploy-local` on a copy of tiny_run."""
    import io
    from contextlib import redirect_stdout

    run = copy_run(tiny_run, tmp_path_factory.mktemp("deploy") / "run")
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(["deploy-local", str(run), "--limit", "24", "--requests", "16", "--concurrency", "1,8"])
    assert rc == 0, out.getvalue()
    return run, json.loads((run / "deploy.json").read_text()), out.getvalue()
