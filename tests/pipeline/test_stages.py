"""The stage table: each stage declared once, and what the CLI, the run directory and the pipeline take from it."""

import shutil

import pytest
from nonn_test_support import run_cli, tiny_args

import nonn
from nonn.cli import build_parser, main
from nonn.errors import CheckpointError
from nonn.rundir import RunDir
from nonn.stages import STAGES, maker_of, stage


def test_every_stage_is_a_cli_command_and_run_lists_the_stages_it_runs():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps its sub-commands here
    for st in STAGES:
        assert st.name in commands
        assert "RUN_DIR" in commands[st.name].format_usage()
    run_help = parser._subparsers._group_actions[0]._choices_actions
    assert any(a.dest == "run" and "teacher, partition, students, evaluate" in a.help for a in run_help)
    assert [st.name for st in STAGES if not st.in_run] == ["export"]


def test_run_directory_paths_and_missing_inputs_come_from_the_table(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.teacher == tmp_path / stage("teacher").artifact and rd.metrics == tmp_path / "metrics.json"
    assert rd.manifest == tmp_path / "onnx" / "manifest.json" and maker_of("partition.json").name == "partition"
    with pytest.raises(CheckpointError, match=r"run `nonn partition "):
        rd.input_sha256(rd.partition)
    with pytest.raises(KeyError, match="stages are teacher, partition, students, evaluate, export"):
        stage("distill")


def test_export_is_a_stage_skipped_when_up_to_date_and_made_again_when_a_file_changes(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("onnx", "logs", "deploy.json"))
    assert main(["export", str(run)]) == 0
    assert "[export] wrote" in capsys.readouterr().out
    assert main(["export", str(run)]) == 0
    assert "is up to date; skipped" in capsys.readouterr().out
    head = run / "onnx" / "head.onnx"
    head.write_bytes(head.read_bytes() + b"\0")  # a file that no longer matches its SHA-256
    assert main(["export", str(run)]) == 0
    assert "[export] wrote" in capsys.readouterr().out
    assert main(["export", str(run), "--no-check"]) == 0  # another setting: made again, without parity
    assert "[export] wrote" in capsys.readouterr().out and "parity" not in (run / "onnx" / "manifest.json").read_text()


def test_nonn_run_from_python_returns_the_metrics_and_skips_what_is_up_to_date(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    logged = []
    cfg = nonn.load_config(overrides=[*tiny_args()[1::2], "data.name=digits", "students.k=2"])
    metrics = nonn.run(run, cfg, log=logged.append)
    assert metrics["k"] == 2 and 0 <= metrics["nonn"]["accuracy"] <= 1
    assert len(logged) == 5 and all("is up to date; skipped" in line for line in logged[:4])
    assert logged[4] == f"[report] wrote {run / 'report.html'}"  # the report is written at the end of every run


def test_a_stage_that_fails_in_its_own_process_is_reported_once(tmp_path):
    proc = run_cli("run", "--dataset", "digits", "--out", str(tmp_path / "run"),
                   *tiny_args("trainer.devices=2", "trainer.strategy=ddp", f"teacher.weights={tmp_path}/none.pt"))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "none.pt do not exist" in errors[0], proc.stderr[-2000:]
