import json

from nonn_test_support import tiny_args

from nonn.ablate import VARIANTS, AblationPlan
from nonn.cli import main


def _tiny_ablation(out, ks: str, seeds: str, variants: str) -> tuple[list[str], dict]:
    """Run a one-epoch ablation into ``out``; returns its CLI arguments and the ablation.json it wrote."""
    args = ["ablate", "--out", str(out), "--k", ks, "--percentiles", "99", "--seeds", seeds,
            "--variants", variants, *tiny_args("teacher.epochs=1", "students.epochs=1")]
    assert main(args) == 0
    return args, json.loads((out / "ablation.json").read_text())


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
    args, report = _tiny_ablation(out, "1,2", "0,1", "ah,random,kd")
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


def test_plan_orders_the_smallest_k_first_and_sizes_compressed_from_its_ah_row():
    runs = AblationPlan(ks=[2, 4], percentiles=[99], seeds=[0], variants=list(VARIANTS)).runs()
    labels = [(v, k) for v, k, _, _ in runs]
    assert labels.index(("kd", 1)) < labels.index(("ah", 4))  # the K=2 table is complete first
    assert labels.index(("ah", 2)) < labels.index(("compressed", 2)) < labels.index(("ah", 4))
    assert labels.index(("ah", 4)) < labels.index(("compressed", 4))
    over = {(v, k): o for v, k, _, o in runs}
    assert over[("pooled", 2)]["students.at_form"] == "pooled"
    assert over[("compressed", 4)] == {"students.k": 1, "_match": "ah-k4-p99"}
    assert over[("ah-auto", 2)]["partition.threshold_percentile"] == "auto"
    assert over[("random-auto", 4)]["partition.rule"] == "random"


def test_compressed_baseline_has_at_most_the_students_total_weights(tmp_path, capsys):
    out = tmp_path / "ablate"
    _, report = _tiny_ablation(out, "2", "0", "ah,pooled,compressed")
    rows = {r["variant"]: r for r in report["rows"]}
    ah = json.loads((out / "ah-k2-p99" / "seed0" / "metrics.json").read_text())["nonn"]
    comp = json.loads((out / "compressed-k2" / "seed0" / "metrics.json").read_text())
    total = sum(s["weight_bytes"] for s in ah["students"])
    one = comp["nonn"]["students"]
    assert len(one) == 1 and one[0]["weight_bytes"] <= total
    assert one[0]["weight_bytes"] > max(s["weight_bytes"] for s in ah["students"])  # bigger than one device's
    assert comp["budget"]["memory_bytes"] == total
    assert rows["compressed"]["k"] == 2 and rows["pooled"]["seeds"] == 1
    assert "at_form: pooled" in (out / "pooled-k2" / "seed0" / "config.yaml").read_text()
    # Every training's time is recorded, and the teacher's test accuracy was evaluated once and shared.
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"teacher", "ah-k2-p99/seed0", "pooled-k2/seed0", "compressed-k2/seed0"}
    assert all(t["wall_s"] > 0 and t["cpu_s"] > 0 for t in timings.values())
    assert (out / "teacher" / "teacher_eval.json").exists()
    assert "trainings (teacher included) took" in (out / "ablation.md").read_text()


def test_a_changed_base_retrains_the_shared_teacher_once_and_every_run_takes_it(tmp_path, monkeypatch):
    from nonn_test_support import TINY

    import nonn.stages.teacher as teacher_stage
    from nonn.ablate import run_ablation
    from nonn.config import load_config
    from nonn.rundir import file_sha256

    plan = AblationPlan(ks=[2], percentiles=[99], seeds=[0, 1], variants=["ah"])
    out = tmp_path / "ablate"
    base = [*TINY, "teacher.epochs=1", "students.epochs=1"]
    run_ablation(load_config(overrides=base), out, plan, log=lambda _m: None)
    trainings = []
    real = teacher_stage.train_teacher
    monkeypatch.setattr(teacher_stage, "train_teacher", lambda *a, **kw: trainings.append(1) or real(*a, **kw))
    run_ablation(load_config(overrides=[*base, "teacher.lr=0.05"]), out, plan, log=lambda _m: None)
    assert len(trainings) == 1  # the shared teacher only, not one more per seed
    shared = file_sha256(out / "teacher" / "teacher.pt")
    assert [file_sha256(out / "ah-k2-p99" / f"seed{s}" / "teacher.pt") for s in (0, 1)] == [shared, shared]
