"""Partition stage: stream the held-out split through the teacher, build the filter graph, group the filters.

`partition_teacher` is the in-memory layer (any teacher, any loader); `run` the run-directory wrapper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from ..config import Config
from ..distill.batches import IdentityPrep
from ..errors import PartitionError
from ..models import FeatureHook
from ..partition import (
    FilterGraphAccumulator,
    Partition,
    partition_filters,
    plot_partition,
    random_partition,
    save_filter_graph,
    save_partition,
)
from ..rundir import RunDir
from . import sizing
from .common import batch_prep, dataset_for, load_teacher, loader


def inputs_hash(rd: RunDir) -> str:
    cfg = rd.load_config()
    return cfg.slice_hash("data", "partition", "budget",
                          extra={"k": cfg.students.k, "family": cfg.students.family,
                                 "teacher": rd.input_sha256(rd.teacher), **sizing.search_version(cfg)})


@dataclass
class TeacherPartition:
    """The K groups of the teacher's final filters, and the filter graph W they were cut from."""

    partition: Partition
    W: np.ndarray
    images: int  # how many images W was accumulated over
    graph_rule: str  # the rule W was built with (the random control records the Activation-Hub graph)


@torch.no_grad()
def filter_graph(teacher, feature_module: str, batches: Iterable, prep, rule: str, top_k: int,
                 progress: bool = True) -> tuple[np.ndarray, int]:
    """W (C x C) accumulated batch by batch: only one batch of activations is ever held.

    `batches` yields image tensors or tuples whose first item is the images."""
    acc = None
    teacher.eval()
    with FeatureHook(teacher, feature_module) as hook:
        for batch in tqdm(batches, desc="filter graph", unit="batch", disable=not progress):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            teacher(prep(x))
            means = hook.output.mean(dim=(2, 3)).double().numpy()
            if acc is None:
                acc = FilterGraphAccumulator(means.shape[1], rule=rule, top_k=top_k)
            acc.update(means)
    if acc is None:
        raise PartitionError("the held-out loader yielded no batches; the filter graph needs images")
    return acc.result(), acc.images


def _group(W, num_filters: int, k: int, pc, max_imbalance: float):
    if pc.rule == "random":
        # The control keeps the Activation-Hub grouping's sizes, so only which filters go together differs.
        ah = partition_filters(W, k, seed=pc.seed, resolution=pc.resolution,
                               threshold_percentile=pc.threshold_percentile, max_imbalance=max_imbalance)
        return random_partition(num_filters, k, seed=pc.seed, sizes=ah.sizes, W=W)
    return partition_filters(W, k, seed=pc.seed, resolution=pc.resolution,
                             threshold_percentile=pc.threshold_percentile, max_imbalance=max_imbalance)


def _check_k(k: int, num_filters: int) -> None:
    if not 1 <= k <= num_filters:
        raise PartitionError(f"students.k={k} is {'larger than' if k > num_filters else 'out of range for'} the "
                             f"teacher's {num_filters} final filters; choose 1 <= k <= {num_filters}")


def partition_teacher(teacher: torch.nn.Module, held_out: Iterable, k: int, cfg: Config | None = None, *,
                      feature_module: str | None = None, prep=None,
                      fits: Callable[[list[int]], bool] | None = None, log=print) -> TeacherPartition:
    """Stream `held_out` through the teacher, build the filter graph of its final filters (cfg.partition's
    rule) and cut it into `k` groups.

    `feature_module` is the module path of the teacher's final block (default cfg.teacher.feature_module);
    `fits(sizes)` says whether students of those group sizes fit the devices: when not, the groups are
    made equal in size."""
    cfg = cfg or Config()
    pc = cfg.partition
    graph_rule = "ah" if pc.rule == "random" else pc.rule  # the random control still records the graph
    W, images = filter_graph(teacher, feature_module or cfg.teacher.feature_module, held_out, prep or IdentityPrep(),
                             graph_rule, pc.top_k, progress=cfg.trainer.show_progress)
    num_filters = W.shape[0]
    _check_k(k, num_filters)
    part = _group(W, num_filters, k, pc, pc.max_imbalance)
    if fits is not None and not fits(part.sizes):
        # Community-shaped groups may be too uneven for the budget; equal sizes are what the budget was sized for.
        log(f"[partition] groups of sizes {part.sizes} exceed the budget; regrouping into equal sizes")
        part = _group(W, num_filters, k, pc, 1.0)
    part.rule = pc.rule
    return TeacherPartition(part, W, images, graph_rule)


def run(rd: RunDir, log=print) -> None:
    cfg = rd.load_config()
    pc = cfg.partition
    ds = dataset_for(cfg)
    teacher, ckpt = load_teacher(rd)
    num_filters = ckpt["feature_shape"][0]
    shape = dict(in_shape=tuple(ds.input_shape), num_classes=ds.num_classes, map_size=tuple(ckpt["feature_shape"][1:]))
    k = sizing.resolve_k(cfg, num_filters=num_filters, **shape) if cfg.students.k == "auto" else cfg.students.k
    if cfg.students.k == "auto":
        log(f"[partition] K=auto: {k} students fit the budget")
    _check_k(k, num_filters)  # before the graph is built
    fits = (lambda sizes: sizing.fits(cfg, sizes, **shape)) if cfg.budget.given else None
    result = partition_teacher(teacher, loader(ds.val, cfg.data.batch_size, shuffle=False), k, cfg,
                               feature_module=ckpt["feature_module"], prep=batch_prep(ds, cfg), fits=fits, log=log)
    save_filter_graph(rd.filter_graph, result.W, rule=result.graph_rule, top_k=pc.top_k,
                      images=result.images, teacher_sha256=rd.input_sha256(rd.teacher))
    plot_partition(rd.partition_plot, result.W, result.partition, threshold=result.partition.threshold)
    save_partition(rd.partition, result.partition, extra={"images": result.images, "inputs_hash": inputs_hash(rd)})
