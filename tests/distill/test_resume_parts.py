"""The parts of resuming and logging a training stage: the best-state round trip through a real Lightning
checkpoint, which checkpoints are refused, shuffling by (seed, epoch), the per-epoch CSV, the logger key."""

import csv
import warnings
import importlib.util

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nonn.config import load_config
from nonn.data.epoch_shuffle import EpochShuffle
from nonn.distill.batches import IdentityPrep
from nonn.distill.classifier_module import ClassifierModule
from nonn.distill.epoch_log import check_logger, stage_loggers
from nonn.distill.resume import CHECKPOINT_NAME, find_resume_point
from nonn.distill.training import BestState, StageFiles, fit
from nonn.errors import ConfigError


def _tiny_fit(tmp_path, epochs=2, inputs_hash="h"):
    torch.manual_seed(0)
    x, y = torch.randn(48, 1, 8, 8), torch.randint(0, 3, (48,))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    module = ClassifierModule(net, IdentityPrep(), lr=0.1, momentum=0.9, weight_decay=0.0)
    cfg = load_config(None, ["trainer.accelerator=cpu", "trainer.progress=false"])
    best = BestState()
    lines = []
    files = StageFiles("t", tmp_path / "checkpoints" / "t", tmp_path / "logs" / "t", inputs_hash, "csv", lines.append)
    ds = TensorDataset(x, y)
    fit(module, DataLoader(ds, batch_size=16, sampler=EpochShuffle(ds, 0)), DataLoader(ds, batch_size=48),
        cfg.trainer, epochs, best, files, progress=False)
    return best, files, lines


def test_best_state_round_trips_through_a_lightning_checkpoint(tmp_path):
    best, files, _ = _tiny_fit(tmp_path)
    ckpt = torch.load(files.checkpoint_dir / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["epoch"] == 1
    saved = next(v for k, v in ckpt["callbacks"].items() if k.startswith("BestState"))
    restored = BestState()
    restored.load_state_dict(saved)
    assert (restored.best_epoch, restored.best_score) == (best.best_epoch, best.best_score)
    assert restored.best_weights.keys() == best.best_weights.keys()
    assert all(torch.equal(restored.best_weights[k], best.best_weights[k]) for k in best.best_weights)
    assert "optimizer_states" in ckpt and "lr_schedulers" in ckpt and "rng" in ckpt["nonn"]


def test_checkpoints_of_other_inputs_or_unreadable_ones_are_not_resumed(tmp_path):
    _, files, _ = _tiny_fit(tmp_path, inputs_hash="first")
    point, why = find_resume_point(files.checkpoint_dir, "first")
    assert point is not None and point.epochs_done == 2 and why is None
    point, why = find_resume_point(files.checkpoint_dir, "second")
    assert point is None and "other inputs" in why
    (files.checkpoint_dir / f".{CHECKPOINT_NAME}.tmp").write_bytes(b"half a save")
    (files.checkpoint_dir / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    point, why = find_resume_point(files.checkpoint_dir, "first")
    assert point is None and "unreadable" in why
    assert not (files.checkpoint_dir / f".{CHECKPOINT_NAME}.tmp").exists()
    assert find_resume_point(tmp_path / "nowhere", "first") == (None, None)


def test_a_stale_checkpoint_is_dropped_and_the_stage_starts_over(tmp_path):
    _tiny_fit(tmp_path, inputs_hash="first")
    _, files, lines = _tiny_fit(tmp_path, inputs_hash="second")
    assert any("not resuming" in ln and "other inputs" in ln for ln in lines), lines
    rows = list(csv.DictReader(open(files.log_dir / "metrics.csv")))
    assert [int(float(r["epoch"])) for r in rows] == [0, 1]


def test_per_epoch_csv_has_every_column_once_per_epoch(tmp_path):
    _, files, _ = _tiny_fit(tmp_path, epochs=3)
    rows = list(csv.DictReader(open(files.log_dir / "metrics.csv")))
    assert [int(float(r["epoch"])) for r in rows] == [0, 1, 2]
    for column in ("loss", "train_acc", "val_acc", "lr", "epoch_time_s"):
        assert all(r[column] != "" for r in rows), column
    assert float(rows[-1]["lr"]) < float(rows[0]["lr"])  # the cosine schedule, as the optimiser saw it


def test_resuming_keeps_the_logged_rows_of_completed_epochs(tmp_path):
    log_dir = tmp_path / "logs" / "t"
    log_dir.mkdir(parents=True)
    (log_dir / "metrics.csv").write_text("epoch,loss,step\n0,1.0,0\n1,0.9,1\n2,0.8,2\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (logger,) = stage_loggers("csv", log_dir, resume_epochs=2)  # epoch 2 was logged but not checkpointed
    assert not [w for w in caught if "logs directory" in str(w.message)]  # no false "files will be deleted"
    logger.log_metrics({"epoch": 2, "loss": 0.7}, step=2)
    logger.save()
    rows = list(csv.DictReader(open(log_dir / "metrics.csv")))
    assert [(r["epoch"], r["loss"]) for r in rows] == [("0", "1.0"), ("1", "0.9"), ("2", "0.7")]


def test_shuffle_is_a_function_of_seed_and_epoch_and_leaves_the_global_rng_alone():
    sampler = EpochShuffle(range(50), seed=3)
    state = torch.get_rng_state()
    first = list(sampler)
    assert torch.equal(state, torch.get_rng_state())
    assert list(sampler) == first and sorted(first) == list(range(50))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_tensorboard_without_its_package_is_a_one_line_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))
    with pytest.raises(ConfigError, match="needs the tensorboard package; pip install tensorboard"):
        check_logger("tensorboard")
    check_logger("csv")
    with pytest.raises(ConfigError, match="trainer.logger must be one of 'csv', 'tensorboard'"):
        load_config(None, ["trainer.logger=wandb"])


def test_tensorboard_logger_writes_events_and_the_csv(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra nonn[tensorboard] (package tensorboard) "
                        "is not installed")
    loggers = stage_loggers("tensorboard", tmp_path / "logs" / "t", None)
    for logger in loggers:
        logger.log_metrics({"epoch": 0, "loss": 1.0}, step=0)
        logger.save()
    for logger in loggers:
        logger.finalize("success")
    assert (tmp_path / "logs" / "t" / "metrics.csv").is_file()
    assert list((tmp_path / "logs" / "t" / "tensorboard").glob("events.out.tfevents.*"))
