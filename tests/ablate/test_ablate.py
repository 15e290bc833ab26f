import json

from nonn_test_support import tiny_args

from nonn.ablate import AblationPlan
from nonn.cli import main


def test_plan_covers_variants_without_duplicates():
    runs = AblationPlan(ks=[1, 2, 4], percentiles=[90, 99], seeds=[0]).runs()
    labels = [(v, k, p) for v, k, p, _ in runs]
    assert len(labels) == len(set(labels))
    assert ("ah", 1, None) in labels and ("kd", 1, None) in labels
    assert ("ah", 2, 90) in labels and ("coact", 2, 99) in labels and ("ah", 4, 99) in labels
    assert ("ah", 4, 90) not in labels  # the threshold sweep runs at one K only
    random_runs = [o for v, _, _, o in runs if v == "random"]
    assert random_runs and all(o["partition.rule"] == "random" for o in random_runs)
    assert all(o["students.beta"] == 0.0 for v, _, _, o in runs if v in ("no-at", "kd"))


def test_ablate_driver_on_a_tiny_configuration(tmp_path, capsys):
    out = tmp_path / "ablate"
    args = ["ablate", "--out", str(out), "--k", "1,2", "--percentiles", "99", "--seeds", "0,1",
            "--variants", "ah,random,kd", *tiny_args("teacher.epochs=1", "students.epochs=1")]
    assert main(args) == 0
    report = json.loads((out / "ablation.json").read_text())
    rows = {(r["variant"], r["k"]): r for r in report["rows"]}
    assert set(rows) == {("ah", 1), ("ah", 2), ("random", 2), ("kd", 1)}
    for r in rows.values():
        assert r["seeds"] == 2 and len(r["accuracies"]) == 2 and 0 <= r["mean"] <= 1
    # The random control has the Activation-Hub partition's sizes but other groups.
    ah = json.loads((out / "ah-k2-p99" / "seed0" / "partition.json").read_text())
    rnd = json.loads((out / "random-k2" / "seed0" / "partition.json").read_text())
    assert sorted(ah["sizes"]) == sorted(rnd["sizes"]) and ah["groups"] != rnd["groups"]
    assert rows[("ah", 2)]["per_device_weight_bytes"] < rows[("kd", 1)]["per_device_weight_bytes"]
    md = (out / "ablation.md").read_text()
    assert md.count("\n| ") >= 5 and "teacher" in md
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Rerunning resumes: nothing is retrained.
    before = {p: p.stat().st_mtime_ns for p in out.glob("**/students.pt")}
    assert len(before) == 8
    assert main(args) == 0
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("**/students.pt")}


def test_ablate_rejects_unknown_variant(capsys):
    assert main(["ablate", "--variants", "ah,magic"]) == 2
    assert "unknown ablation variant" in capsys.readouterr().err
