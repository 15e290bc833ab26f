"""What several stages share: the dataset, data loaders, and rebuilding models from their checkpoints."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..config import Config
from ..data import Dataset, Split, load_dataset
from ..data.epoch_shuffle import EpochShuffle
from ..distill.batches import BatchPrep
from ..distill.nonn_model import NoNN, build_nonn
from ..distill.resume import remove_checkpoints
from ..distill.training import StageFiles
from ..errors import CheckpointError
from ..models import create_model
from ..rundir import RunDir, load_checkpoint


def dataset_for(cfg: Config) -> Dataset:
    d = cfg.data
    return load_dataset(d.name, d.dir, limit_train=d.limit_train, val_fraction=d.val_fraction, seed=d.seed)


def loader(split: Split, batch_size: int, *, shuffle: bool, with_index: bool = False,
           seed: int = 0) -> DataLoader:
    """Batches of (x, y), or (x, y, index into the split) for lookups such as the teacher-target cache.

    Shuffled in an order fixed by (seed, epoch), drawing nothing from the global RNG: a resumed stage sees the
    batches, and the augmentation draws, that the uninterrupted one would have."""
    dataset = TensorDataset(*((split.x, split.y, torch.arange(len(split.y))) if with_index else (split.x, split.y)))
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochShuffle(dataset, seed) if shuffle else None,
                      drop_last=False, num_workers=0, generator=torch.Generator().manual_seed(seed))


def batch_prep(ds: Dataset, cfg: Config) -> BatchPrep:
    return BatchPrep(ds.mean, ds.std, ds.augment if cfg.data.augment else None)


def seed_everything(seed: int) -> None:
    L.seed_everything(seed, workers=True, verbose=False)


def training_files(rd: RunDir, name: str, inputs_hash: str, log) -> StageFiles:
    """A training stage's checkpoint and log folders in the run directory."""
    cfg = rd.load_config()
    return StageFiles(name, rd.checkpoint_dir(name), rd.log_dir(name), inputs_hash, cfg.trainer.logger, log)


def finish_training_files(rd: RunDir, files: StageFiles, cfg: Config) -> None:
    """After the artifact is written: plot the curves, and drop the checkpoints unless asked to keep them."""
    from ..report.curves import plot_training_curves
    csv_path = files.log_dir / "metrics.csv"
    if csv_path.exists():
        plot_training_curves(csv_path, rd.curves_plot(files.name), title=f"{files.name} training")
    if not cfg.trainer.keep_checkpoints:
        remove_checkpoints(files.checkpoint_dir)


def load_teacher(rd: RunDir) -> tuple[torch.nn.Module, dict]:
    ckpt = load_checkpoint(rd.teacher, "teacher")
    model = create_model(ckpt["arch"], num_classes=ckpt["num_classes"], in_channels=ckpt["in_channels"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise CheckpointError(f"{rd.teacher} does not match architecture {ckpt['arch']}; delete it and rerun "
                              f"`nonn teacher {rd.path}`") from None
    return model.eval(), ckpt


def build_students(ckpt: dict) -> NoNN:
    """An untrained NoNN with the shapes a students checkpoint (or its metadata) describes."""
    return build_nonn(
        lambda k: create_model(ckpt["archs"][k], num_classes=ckpt["num_classes"], in_channels=ckpt["in_channels"]),
        ckpt["partition_sizes"], ckpt["num_classes"], tuple(ckpt["map_size"]))


def load_students(rd: RunDir) -> tuple[NoNN, dict]:
    ckpt = load_checkpoint(rd.students, "students")
    net = build_students(ckpt)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise CheckpointError(f"{rd.students} does not match its recorded shapes; delete it and rerun "
                              f"`nonn students {rd.path}`") from None
    return net.eval(), ckpt


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, prep: BatchPrep, batch_size: int = 256, **kwargs) -> torch.Tensor:
    """Predicted labels of a split, in order."""
    model.eval()
    preds = []
    for i in range(0, len(split.y), batch_size):
        preds.append(model(prep(split.x[i:i + batch_size]), **kwargs).argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def accuracy_on(model, split: Split, prep: BatchPrep, **kwargs) -> float:
    return float((predict(model, split, prep, **kwargs) == split.y).float().mean())
