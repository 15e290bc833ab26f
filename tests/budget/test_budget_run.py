"""Students sized from a device budget, through the real pipeline and checked by counting what was saved."""

import json

from nonn_test_support import tiny_args

from nonn.cli import main
from nonn.rundir import RunDir
from nonn.stages.common import load_students


def test_auto_k_students_fit_the_memory_budget(tmp_path, capsys):
    out = tmp_path / "budget"
    budget = 340_000
    assert main(["run", "--out", str(out), "--k", "auto", "--device-memory", "340KB",
                 *tiny_args("teacher.epochs=1", "students.epochs=1")]) == 0
    printed = capsys.readouterr().out
    assert "chosen for the budget" in printed
    net, ckpt = load_students(RunDir(out))
    for node, arch in zip(net.students, ckpt["archs"]):
        counted = sum(p.numel() for p in node.parameters()) * 4
        assert counted <= budget, (arch, counted)
        assert arch in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["budget"]["memory_bytes"] == budget
    assert all(s["fits_budget"] for s in m["nonn"]["students"])
    assert m["k"] == len(net.students) >= 1


def test_budget_nothing_can_meet(tmp_path, capsys):
    out = tmp_path / "tiny-budget"
    assert main(["run", "--out", str(out), "--k", "2", "--device-memory", "2KB",
                 *tiny_args("teacher.epochs=1", "students.epochs=1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "raise --device-memory to at least" in err
    assert not (out / "students.pt").exists()


def test_auto_k_needs_a_budget(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "x"), "--k", "auto", *tiny_args()]) == 2
    assert "needs a device budget" in capsys.readouterr().err


def test_a_changed_budget_search_replans_budget_runs_only(tiny_run, tmp_path, monkeypatch):
    """Students sized by a budget are planned again when the search changes; others are not."""
    import shutil

    from nonn import budget
    from nonn.config import load_config
    from nonn.stages import partition, students

    sized = RunDir(shutil.copytree(tiny_run, tmp_path / "sized"))
    cfg = load_config(sized.config_path, ["budget.memory=10MB"])
    sized.save_config(cfg)
    plain = RunDir(tiny_run)
    before = {name: (stage.inputs_hash(sized), stage.inputs_hash(plain))
              for name, stage in (("partition", partition), ("students", students))}
    monkeypatch.setattr(budget, "SEARCH_VERSION", budget.SEARCH_VERSION + 1)
    for name, stage in (("partition", partition), ("students", students)):
        assert stage.inputs_hash(sized) != before[name][0], name
        assert stage.inputs_hash(plain) == before[name][1], name


def test_training_hashes_cover_the_trainer_settings_but_not_the_display(tiny_run, tmp_path):
    """A run moved to another precision or to DDP is trained again; turning progress bars on is not a change."""
    import shutil

    from nonn.config import load_config
    from nonn.stages import partition, students, teacher

    rd = RunDir(shutil.copytree(tiny_run, tmp_path / "moved"))
    base = load_config(rd.config_path)
    before = {s.__name__: s.inputs_hash(rd) for s in (teacher, partition, students)}
    for setting in ("trainer.precision=bf16-mixed", "trainer.devices=2", "trainer.strategy=ddp"):
        rd.save_config(load_config(rd.config_path, [setting]))
        assert teacher.inputs_hash(rd) != before[teacher.__name__], setting
        assert students.inputs_hash(rd) != before[students.__name__], setting
        assert partition.inputs_hash(rd) == before[partition.__name__], setting  # no training there
        rd.save_config(base)
    rd.save_config(load_config(rd.config_path, ["trainer.progress=true"]))
    assert {s.__name__: s.inputs_hash(rd) for s in (teacher, partition, students)} == before
