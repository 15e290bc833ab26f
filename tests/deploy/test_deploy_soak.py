"""`python -m nonn.bench.soak` from architectures alone: it exports untrained models, soaks them, and reports."""

import json

import pytest

from nonn.bench.soak import main


def test_soak_exports_architectures_and_reports_every_round(tmp_path, capsys):
    out = tmp_path / "soak"
    assert main(["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--input", "1x8x8", "--clients", "2",
                 "--seconds", "1", "--rounds", "2", "--warmup-s", "0.5", "--out", str(out)]) == 0
    assert "UNTRAINED" in capsys.readouterr().out
    assert (out / "onnx" / "manifest.json").is_file() and not (out / "teacher_untrained.pt").exists()
    r = json.loads((out / "soak.json").read_text())
    assert r["models"]["teacher_arch"] == "wrn-10-2" and r["models"]["k"] == 2
    assert r["models"]["input_shape"] == [1, 8, 8] and r["security"] == "mtls"
    assert len(r["rounds"]) == 2 and r["errors"] == 0
    for figures in (r["warmup"], *r["rounds"]):
        assert figures["images"] > 0 and figures["errors"] == {}
        assert sorted(figures["rss_mib"]) == ["gateway", "node 0", "node 1"]
        assert all(v > 0 for v in figures["rss_mib"].values())
    assert sorted(r["rss_growth_percent"]) == ["gateway", "node 0", "node 1"]


@pytest.mark.parametrize("argv, says", [
    ([], "give --manifest"),
    (["--manifest", "m.json", "--teacher-arch", "wrn-10-2"], "not both"),
    (["--student-arch", "wrn-10-1"], "give both --teacher-arch and --student-arch"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--clients", "0"], "--clients"),
    (["--teacher-arch", "wrn-10-2", "--student-arch", "wrn-10-1", "--input", "8x8"], "--input must be CxHxW"),
])
def test_soak_bad_flags_say_so_in_one_line(tmp_path, capsys, argv, says):
    assert main([*argv, "--out", str(tmp_path / "soak")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "soak" / "onnx").exists()
