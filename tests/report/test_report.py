"""nonn report: a self-contained report.html of a run, rendered in real headless Chromium (Debian's chromium)."""

import json
import re
import shutil
import subprocess

import pytest
from nonn_test_support import run_cli

from nonn.report import write_report
from nonn.report.browser import find_chromium, open_in_chromium


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed when missing; skips only where apt-get cannot install it."""
    if find_chromium() is None and shutil.which("apt-get"):
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, capture_output=True, timeout=900, check=False)
    if find_chromium() is None:
        pytest.skip("Debian's chromium is not installed and apt-get could not install it (apt-get install chromium)")
    return find_chromium()


def test_run_writes_a_self_contained_report(tiny_run):
    html = (tiny_run / "report.html").read_text()  # nonn run writes it at the end
    assert "<table id=\"accuracy\">" in html and "<pre id=\"config\">" in html
    # Nothing to fetch: every image is embedded, no script, stylesheet or link leaves the file.
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 3
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert f"{100 * metrics['nonn']['accuracy']:.2f} %" in html
    for acc in metrics["nonn"]["accuracy_missing_student"]:
        assert f"{100 * acc:.2f} %" in html
    part = json.loads((tiny_run / "partition.json").read_text())
    assert f"{part['isolated_fraction']:.4f}" in html and ", ".join(map(str, part["sizes"])) in html


def test_report_renders_in_headless_chromium(tiny_run, tmp_path, chromium):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    proc = run_cli("report", str(run), "--screenshot", str(tmp_path / "report.png"))
    assert proc.returncode == 0, proc.stderr
    assert f"report: {run}/report.html" in proc.stdout
    check = open_in_chromium(run / "report.html", tmp_path / "again.png")
    assert check.console_errors == [] and check.requests == []
    assert "accuracy" in check.tables and "students" in check.tables and "partition" in check.tables
    k = json.loads((run / "metrics.json").read_text())["k"]
    assert check.accuracy_rows == 2 + k  # teacher, NoNN, and NoNN without each student
    assert check.images >= 3 and check.broken_images == 0  # partition graph and both stages' curves
    for shot in (tmp_path / "report.png", tmp_path / "again.png"):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_broken_page_is_caught(tmp_path, chromium):
    """The browser check can fail: a script error and a broken image are reported."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="missing.png"><script>undefinedFunction();</script></body></html>')
    check = open_in_chromium(page)
    assert any("undefinedFunction" in e for e in check.console_errors)
    assert check.broken_images == 1 and check.images == 0
    assert any(u.endswith("missing.png") for u in check.requests)


def test_optional_artifacts_appear_when_present(tiny_run, tmp_path):
    from nonn.pipeline import run_stage
    from nonn.rundir import RunDir
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("onnx*", "deploy*.json", "bench*"))
    html = write_report(run).read_text()
    assert "Export parity" not in html and "deploy.json" not in html and "bench.json" not in html
    run_stage(RunDir(run), "export", log=lambda line: None)
    (run / "deploy.json").write_text(json.dumps({"accuracy": {"match": True, "deployed": 0.5}, "k": 2}))
    html = write_report(run).read_text()
    parity = json.loads((run / "onnx" / "manifest.json").read_text())["parity"]
    assert "Export parity" in html and f"<td>{parity['max_abs_diff']}</td>" in html
    assert "Local deployment (deploy.json)" in html and "accuracy.match" in html


def test_report_of_an_ablation_folder(tiny_run, tmp_path):
    """An ablation's output folder (ablation.json, ablation.png) gets its table and plot."""
    from nonn.ablate import AblationPlan
    from nonn.ablate_report import summarise, write_report as write_ablation
    from nonn.config import Config
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    rows = [summarise("ah", 2, 99.0, [metrics, metrics])]
    write_ablation(tmp_path, AblationPlan(ks=[2], percentiles=[99.0], seeds=[0, 1], variants=["ah"]), Config(), rows, 1)
    html = write_report(tmp_path).read_text()
    assert '<table id="ablation">' in html and f"{100 * metrics['nonn']['accuracy']:.2f} ± 0.00" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 1


def test_report_of_a_folder_that_is_no_run_is_one_line_error(tmp_path):
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is not a run directory" in proc.stderr
