"""Student stage: train K students, their bridges and the head jointly against the frozen teacher."""

from __future__ import annotations

import json
import sys

from ..budget import format_plan
from ..distill.distill_module import DistillModule
from ..distill.training import BestState, build_trainer
from ..errors import CheckpointError
from ..models import validate_name
from ..rundir import RunDir, save_checkpoint
from . import sizing
from .common import (
    accuracy_on,
    batch_prep,
    build_students,
    dataset_for,
    load_teacher,
    loader,
    seed_everything,
)


def inputs_hash(rd: RunDir) -> str:
    cfg = rd.load_config()
    return cfg.slice_hash("data", "students", "budget", extra={"teacher": rd.input_sha256(rd.teacher),
                                                     "partition": rd.input_sha256(rd.partition),
                                                     "trainer": cfg.trainer.training_settings(),
                                                     **sizing.search_version(cfg)})


def load_groups(rd: RunDir) -> list[list[int]]:
    if not rd.partition.exists():
        raise CheckpointError(f"{rd.partition} does not exist; run `nonn partition {rd.path}` first")
    try:
        groups = json.loads(rd.partition.read_text())["groups"]
    except (ValueError, KeyError):
        raise CheckpointError(f"{rd.partition} is corrupt; delete it and rerun `nonn partition {rd.path}`") from None
    return [list(map(int, g)) for g in groups]


def run(rd: RunDir, log=print) -> None:
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
    meta = {
        "archs": [arch for arch, _ in plan],
        "partition_sizes": [len(g) for g in groups],
        "groups": groups,
        "num_classes": ds.num_classes,
        "in_channels": ds.input_shape[0],
        "input_shape": list(ds.input_shape),
        "map_size": list(tckpt["feature_shape"][1:]),
    }
    net = build_students(meta)
    net.drop_prob = sc.drop_prob
    prep = batch_prep(ds, cfg)
    module = DistillModule(net, teacher, tckpt["feature_module"], groups, prep, alpha=sc.alpha,
                           temperature=sc.temperature, beta=sc.resolved_beta(), at_form=sc.at_form,
                           lr=sc.lr, momentum=sc.momentum, weight_decay=sc.weight_decay,
                           teacher_views=sc.resolved_teacher_views(), train_images=ds.train.x, view_seed=sc.seed)
    best = BestState()
    trainer = build_trainer(cfg.trainer, sc.epochs, [best], progress=cfg.trainer.show_progress)
    trainer.fit(module, loader(ds.train, cfg.data.batch_size, shuffle=True, with_index=sc.resolved_teacher_views() > 0),
                loader(ds.val, cfg.data.batch_size, shuffle=False))
    if trainer.global_rank != 0:
        sys.exit(0)  # DDP workers end here; rank 0 writes the artifact and goes on
    net.load_state_dict(best.best_weights)
    net = net.cpu().eval()
    save_checkpoint(rd.students, {
        **meta,
        "state_dict": net.state_dict(),
        "val_acc": accuracy_on(net, ds.val, prep),
        "best_epoch": best.best_epoch,
        "world_size": trainer.world_size,
        "at_form": sc.at_form,
        "beta": sc.resolved_beta(),
        "inputs_hash": inputs_hash(rd),
    })
