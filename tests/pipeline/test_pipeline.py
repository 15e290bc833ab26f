import json

import numpy as np
import torch
from nonn_test_support import tiny_args

from nonn.cli import main
from nonn.rundir import RunDir
from nonn.stages.common import load_students, load_teacher


def test_run_writes_every_artifact(tiny_run):
    for name in ["config.yaml", "teacher.pt", "filter_graph.npz", "partition.json", "students.pt", "metrics.json",
                 "plots/partition.png"]:
        assert (tiny_run / name).is_file(), name
    assert not list(tiny_run.glob("**/*.tmp"))


def test_metrics_schema(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert m["dataset"] == "digits" and m["k"] == 2
    assert 0 <= m["teacher"]["accuracy"] <= 1 and m["teacher"]["params"] > 0 and m["teacher"]["macs"] > 0
    students = m["nonn"]["students"]
    assert len(students) == 2
    part = json.loads((tiny_run / "partition.json").read_text())
    assert [s["filters"] for s in students] == [len(g) for g in part["groups"]]
    assert sum(s["filters"] for s in students) == 128  # wrn-10-2 has 128 final filters; none dropped
    for s in students:
        assert s["bytes_sent"] == 4 * s["filters"]
        assert 0 < s["params"] < m["teacher"]["params"] and 0 < s["macs"] < m["teacher"]["macs"]
    assert m["nonn"]["params_total"] == sum(s["params"] for s in students) + m["nonn"]["head"]["params"]
    assert len(m["nonn"]["accuracy_missing_student"]) == 2


def test_metrics_accuracy_is_recomputable(tiny_run):
    """The reported NoNN accuracy equals what the saved students give on the test split."""
    from nonn.stages.common import accuracy_on, batch_prep, dataset_for
    rd = RunDir(tiny_run)
    cfg = rd.load_config()
    ds = dataset_for(cfg)
    net, ckpt = load_students(rd)
    m = json.loads(rd.metrics.read_text())
    assert accuracy_on(net, ds.test, batch_prep(ds, cfg)) == m["nonn"]["accuracy"]
    teacher, tckpt = load_teacher(rd)
    assert tckpt["feature_shape"] == [128, 2, 2]
    assert ckpt["partition_sizes"] == [len(g) for g in ckpt["groups"]]


def test_partition_groups_cover_every_filter(tiny_run):
    part = json.loads((tiny_run / "partition.json").read_text())
    flat = sorted(i for g in part["groups"] for i in g)
    assert flat == list(range(128))
    W = np.load(tiny_run / "filter_graph.npz")["W"]
    assert W.shape == (128, 128) and np.allclose(W, W.T)


def test_second_run_skips_up_to_date_stages(tiny_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    assert main(["run", "--dataset", "digits", "--k", "2", "--out", str(tiny_run), *tiny_args()]) == 0
    out = capsys.readouterr().out
    assert out.count("up to date; skipped") == 4
    assert before == {p: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}


def test_changed_student_config_reruns_only_students(tmp_path, tiny_run, capsys):
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    teacher_mtime = (run / "teacher.pt").stat().st_mtime_ns
    assert main(["run", "--dataset", "digits", "--k", "2", "--out", str(run),
                 *tiny_args("students.epochs=1")]) == 0
    out = capsys.readouterr().out
    assert "[teacher] " in out and "teacher.pt is up to date" in out
    assert "partition.json is up to date" in out
    assert "[students] wrote" in out
    assert (run / "teacher.pt").stat().st_mtime_ns == teacher_mtime


def test_user_teacher_weights_are_loaded(tmp_path, tiny_run, capsys):
    """A user's state_dict (torch.save(model.state_dict())) becomes the teacher unchanged."""
    teacher, _ = load_teacher(RunDir(tiny_run))
    weights = tmp_path / "mine.pt"
    torch.save(teacher.state_dict(), weights)
    run = tmp_path / "user"
    assert main(["teacher", str(run)]) == 2  # not a run dir yet
    from nonn.config import load_config
    from nonn.pipeline import init_run, run_stage
    cfg = load_config(overrides=[*[a for a in tiny_args() if a != "--set"], f"teacher.weights={weights}"])
    rd = init_run(run, cfg)
    run_stage(rd, "teacher")
    loaded, ckpt = load_teacher(rd)
    assert ckpt["source"] == "loaded"
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
