"""The per-epoch record of a training stage: one row per epoch (each loss term, training and validation accuracy,
learning rate, epoch time) to Lightning's CSVLogger (and TensorBoard when asked), and one printed line."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import lightning as L

from ..errors import ConfigError

METRICS_FILE = "metrics.csv"


class EpochLog(L.Callback):
    """At the end of every training epoch (after validation), one row to every logger of the trainer.

    Modules log their terms with ``on_epoch=True``; the row takes the epoch means from the trainer's callback
    metrics. ``echo`` (rank 0 only) gets the row as one line of text."""

    def __init__(self, stage: str, echo: Callable[[str], None] | None = None):
        self.stage, self.echo = stage, echo
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.endswith("_step"):
                continue
            row[key.removesuffix("_epoch")] = float(value)
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        row["epoch_time_s"] = time.perf_counter() - self._start
        for logger in trainer.loggers:
            logger.log_metrics(row, step=trainer.current_epoch)
            logger.save()
        if self.echo is not None and trainer.is_global_zero:
            self.echo(format_row(self.stage, row, trainer.max_epochs))


def format_row(stage: str, row: dict[str, float], max_epochs: int | None) -> str:
    parts = [f"{k} {row[k]:.4f}" for k in row if k not in ("epoch", "lr", "epoch_time_s")]
    if "lr" in row:
        parts.append(f"lr {row['lr']:.4g}")
    return (f"[{stage}] epoch {int(row['epoch']) + 1}/{max_epochs}: " + ", ".join(parts)
            + f" ({row['epoch_time_s']:.1f} s)")


def tensorboard_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def check_logger(kind: str) -> None:
    """A one-line error when trainer.logger=tensorboard cannot work here."""
    if kind == "tensorboard" and not tensorboard_available():
        raise ConfigError("trainer.logger=tensorboard needs the tensorboard package; pip install tensorboard "
                          "(or pip install 'nonn[tensorboard]'), or set trainer.logger=csv")


def stage_loggers(kind: str, log_dir: Path, resume_epochs: int | None) -> list:
    """Lightning loggers writing into ``log_dir`` (CSV always, TensorBoard too for ``kind == "tensorboard"``).

    A fresh start clears the folder; a resume after ``resume_epochs`` completed epochs keeps those rows of
    metrics.csv and drops any later one (an epoch logged but not checkpointed before a kill is run again)."""
    from lightning.pytorch.loggers import CSVLogger
    check_logger(kind)
    log_dir = Path(log_dir)
    kept = _rows_before(log_dir / METRICS_FILE, resume_epochs) if resume_epochs is not None else []
    if resume_epochs is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    csv_logger = CSVLogger(save_dir=log_dir.parent, name=log_dir.name, version="")
    if kept:  # Lightning's CSV writer deletes an existing metrics.csv when it opens: write the kept rows again
        with warnings.catch_warnings():  # its "previous log files will be deleted" warning is untrue here
            warnings.filterwarnings("ignore", ".*Experiment logs directory.*")
            writer = csv_logger.experiment
        for row in kept:
            step = row.pop("step", row["epoch"])
            writer.log_metrics(row, step=int(float(step)))
        csv_logger.save()
    loggers = [csv_logger]
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger
        loggers.append(TensorBoardLogger(save_dir=log_dir.parent, name=log_dir.name, version="tensorboard",
                                         default_hp_metric=False))
    return loggers


def _rows_before(path: Path, epochs: int) -> list[dict[str, str]]:
    """The rows of an existing metrics.csv for the first `epochs` epochs, as written."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)
                if r.get("epoch") not in (None, "") and float(r["epoch"]) < epochs]
