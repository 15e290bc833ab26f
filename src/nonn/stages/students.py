"""Student stage: train K students, their bridges and the head jointly against the frozen teacher.

`distill_students` is the in-memory layer (any teacher, any loaders); `run` the run-directory wrapper."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ..budget import format_plan
from ..config import Config
from ..distill.batches import IdentityPrep
from ..distill.distill_module import DistillModule
from ..distill.training import BestState, StageFiles, fit
from ..distill.nonn_model import NoNN
from ..models import probe_feature_shape, validate_name
from ..partition import load_partition
from ..rundir import RunDir, save_checkpoint
from . import sizing
from .common import (
    accuracy_on,
    batch_prep,
    build_students,
    dataset_for,
    finish_training_files,
    load_teacher,
    loader,
    seed_everything,
    training_files,
)


def inputs_hash(rd: RunDir) -> str:
    cfg = rd.load_config()
    return cfg.slice_hash("data", "students", "budget", extra={"teacher": rd.input_sha256(rd.teacher),
                                                     "partition": rd.input_sha256(rd.partition),
                                                     "trainer": cfg.trainer.training_settings(),
                                                     **sizing.search_version(cfg)})


def load_groups(rd: RunDir) -> list[list[int]]:
    return load_partition(rd.partition).groups


@dataclass
class DistilledStudents:
    """The trained NoNN (K students, their bridges and the head) in eval mode on the CPU."""

    net: NoNN
    best_epoch: int
    world_size: int = 1
    is_worker: bool = False  # a DDP rank other than 0: its copy is not the one to keep


def distill_students(teacher: torch.nn.Module, groups: list[list[int]], train: DataLoader, val: DataLoader,
                     cfg: Config | None = None, *, input_shape: tuple[int, int, int], num_classes: int,
                     feature_module: str | None = None, archs: list[str] | None = None, prep=None,
                     train_images: torch.Tensor | None = None, files: StageFiles | None = None) -> DistilledStudents:
    """Train one student per group of the teacher's final filters, jointly, with KD and attention transfer
    (cfg.students' settings), keeping the weights at the best validation accuracy.

    `train` yields (x, y), or (x, y, index into `train_images`) when the teacher's targets are cached
    (cfg.students.teacher_views > 0 and `train_images` given: uint8 images that `prep` augments);
    without `train_images` the teacher runs on every batch. `archs` names each student's architecture
    (default cfg.students.arch for all); `files` (optional) is where per-epoch logs and the resume checkpoint go."""
    cfg = cfg or Config()
    sc = cfg.students
    feature_module = feature_module or cfg.teacher.feature_module
    archs = archs or [sc.arch] * len(groups)
    for arch in archs:
        validate_name(arch)
    map_size = probe_feature_shape(teacher, feature_module, input_shape)[1:]
    net = build_students({"archs": archs, "partition_sizes": [len(g) for g in groups], "num_classes": num_classes,
                          "in_channels": input_shape[0], "map_size": list(map_size)})
    net.drop_prob = sc.drop_prob
    views = sc.resolved_teacher_views() if train_images is not None else 0
    module = DistillModule(net, teacher, feature_module, groups, prep or IdentityPrep(), alpha=sc.alpha,
                           temperature=sc.temperature, beta=sc.resolved_beta(), at_form=sc.at_form,
                           lr=sc.lr, momentum=sc.momentum, weight_decay=sc.weight_decay,
                           teacher_views=views, train_images=train_images, view_seed=sc.seed)
    best = BestState()
    trainer = fit(module, train, val, cfg.trainer, sc.epochs, best, files, progress=cfg.trainer.show_progress)
    if trainer.global_rank != 0:
        return DistilledStudents(net, best.best_epoch, trainer.world_size, is_worker=True)
    net.load_state_dict(best.best_weights)
    return DistilledStudents(net.cpu().eval(), best.best_epoch, trainer.world_size)


def run(rd: RunDir, log=print) -> bool:
    """Train and write the artifact; False in a DDP worker process, which writes nothing."""
    cfg = rd.load_config()
    sc = cfg.students
    validate_name(sc.arch)
    seed_everything(sc.seed)
    ds = dataset_for(cfg)
    teacher, tckpt = load_teacher(rd)
    groups = load_groups(rd)
    plan = sizing.plan(cfg, [len(g) for g in groups], in_shape=tuple(ds.input_shape), num_classes=ds.num_classes,
                       map_size=tuple(tckpt["feature_shape"][1:]))
    if cfg.budget.given:
        log(f"[students] chosen for the budget ({sizing.budget_of(cfg)} per device):\n{format_plan(plan)}")
    prep = batch_prep(ds, cfg)
    cached = sc.resolved_teacher_views() > 0
    files = training_files(rd, "students", inputs_hash(rd), log)
    train = loader(ds.train, cfg.data.batch_size, shuffle=True, with_index=cached, seed=sc.seed)
    result = distill_students(teacher, groups, train,
                              loader(ds.val, cfg.data.batch_size, shuffle=False), cfg,
                              input_shape=tuple(ds.input_shape), num_classes=ds.num_classes,
                              feature_module=tckpt["feature_module"], archs=[arch for arch, _ in plan], prep=prep,
                              train_images=ds.train.x if cached else None,
                              files=files)
    if result.is_worker:
        return False  # a DDP worker: rank 0 writes the artifact
    net = result.net
    save_checkpoint(rd.students, {
        "archs": [arch for arch, _ in plan],
        "partition_sizes": [len(g) for g in groups],
        "groups": groups,
        "num_classes": ds.num_classes,
        "in_channels": ds.input_shape[0],
        "input_shape": list(ds.input_shape),
        "map_size": list(tckpt["feature_shape"][1:]),
        "state_dict": net.state_dict(),
        "val_acc": accuracy_on(net, ds.val, prep),
        "best_epoch": result.best_epoch,
        "world_size": result.world_size,
        "at_form": sc.at_form,
        "beta": sc.resolved_beta(),
        "inputs_hash": inputs_hash(rd),
    })
    finish_training_files(rd, files, cfg)
    return True
