"""Partition stage: stream the held-out split through the teacher, build the filter graph, group the filters."""

from __future__ import annotations

import torch
from tqdm import tqdm

from .. import atomic
from ..errors import PartitionError
from ..models import FeatureHook
from ..partition import (
    FilterGraphAccumulator,
    partition_filters,
    plot_partition,
    random_partition,
    save_filter_graph,
)
from ..rundir import RunDir
from . import sizing
from .common import batch_prep, dataset_for, load_teacher


def inputs_hash(rd: RunDir) -> str:
    cfg = rd.load_config()
    return cfg.slice_hash("data", "partition", "budget",
                          extra={"k": cfg.students.k, "family": cfg.students.family,
                                 "teacher": rd.input_sha256(rd.teacher), **sizing.search_version(cfg)})


@torch.no_grad()
def filter_graph(teacher, feature_module: str, split, prep, rule: str, top_k: int, batch_size: int,
                 progress: bool = True):
    """W (C x C) accumulated batch by batch: only one batch of activations is ever held."""
    acc = None
    with FeatureHook(teacher, feature_module) as hook:
        for i in tqdm(range(0, len(split.y), batch_size), desc="filter graph", unit="batch", disable=not progress):
            teacher(prep(split.x[i:i + batch_size]))
            means = hook.output.mean(dim=(2, 3)).double().numpy()
            if acc is None:
                acc = FilterGraphAccumulator(means.shape[1], rule=rule, top_k=top_k)
            acc.update(means)
    return acc.result(), acc.images


def _group(W, num_filters: int, k: int, pc, max_imbalance: float):
    if pc.rule == "random":
        # The control keeps the Activation-Hub grouping's sizes, so only which filters go together differs.
        ah = partition_filters(W, k, seed=pc.seed, resolution=pc.resolution,
                               threshold_percentile=pc.threshold_percentile, max_imbalance=max_imbalance)
        return random_partition(num_filters, k, seed=pc.seed, sizes=ah.sizes, W=W)
    return partition_filters(W, k, seed=pc.seed, resolution=pc.resolution,
                             threshold_percentile=pc.threshold_percentile, max_imbalance=max_imbalance)


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
    if k > num_filters:
        raise PartitionError(f"students.k={k} is larger than the teacher's {num_filters} final filters; "
                             f"choose 1 <= k <= {num_filters}")
    # The random control still records the graph, so its quality figures compare with the others'.
    graph_rule = "ah" if pc.rule == "random" else pc.rule
    W, images = filter_graph(teacher, ckpt["feature_module"], ds.val, batch_prep(ds, cfg), graph_rule, pc.top_k,
                             cfg.data.batch_size, progress=cfg.trainer.show_progress)
    part = _group(W, num_filters, k, pc, pc.max_imbalance)
    if cfg.budget.given and not sizing.fits(cfg, part.sizes, **shape):
        # Community-shaped groups may be too uneven for the budget; equal sizes are what the budget was sized for.
        log(f"[partition] groups of sizes {part.sizes} exceed the budget; regrouping into equal sizes")
        part = _group(W, num_filters, k, pc, 1.0)
    part.rule = pc.rule
    save_filter_graph(rd.filter_graph, W, rule=graph_rule, top_k=pc.top_k, images=images,
                      teacher_sha256=rd.input_sha256(rd.teacher))
    plot_partition(rd.partition_plot, W, part, threshold=part.threshold)
    atomic.write_json(rd.partition, {**part.to_dict(), "images": images, "inputs_hash": inputs_hash(rd)})
