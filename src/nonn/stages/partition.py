"""Partition stage: stream the held-out split through the teacher, build the filter graph, group the filters."""

from __future__ import annotations

import torch
from tqdm import tqdm

from .. import atomic
from ..errors import PartitionError
from ..models import FeatureHook
from ..partition import FilterGraphAccumulator, partition_filters, plot_partition, random_partition, save_filter_graph
from ..rundir import RunDir
from .common import batch_prep, dataset_for, load_teacher


def inputs_hash(rd: RunDir) -> str:
    cfg = rd.load_config()
    return cfg.slice_hash("data", "partition", extra={"k": cfg.students.k, "teacher": rd.input_sha256(rd.teacher)})


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


def run(rd: RunDir) -> None:
    cfg = rd.load_config()
    pc, k = cfg.partition, cfg.students.k
    ds = dataset_for(cfg)
    teacher, ckpt = load_teacher(rd)
    num_filters = ckpt["feature_shape"][0]
    if k > num_filters:
        raise PartitionError(f"students.k={k} is larger than the teacher's {num_filters} final filters; "
                             f"choose 1 <= k <= {num_filters}")
    # The random control still records the graph, so its quality figures compare with the others'.
    graph_rule = "ah" if pc.rule == "random" else pc.rule
    W, images = filter_graph(teacher, ckpt["feature_module"], ds.val, batch_prep(ds, cfg), graph_rule, pc.top_k,
                             cfg.data.batch_size, progress=cfg.trainer.progress)
    if pc.rule == "random":
        part = random_partition(num_filters, k, seed=pc.seed, W=W)
    else:
        part = partition_filters(W, k, seed=pc.seed, resolution=pc.resolution,
                                 threshold_percentile=pc.threshold_percentile, max_imbalance=pc.max_imbalance)
    part.rule = pc.rule
    save_filter_graph(rd.filter_graph, W, rule=graph_rule, top_k=pc.top_k, images=images,
                      teacher_sha256=rd.input_sha256(rd.teacher))
    plot_partition(rd.partition_plot, W, part, threshold=part.threshold)
    atomic.write_json(rd.partition, {**part.to_dict(), "images": images, "inputs_hash": inputs_hash(rd)})
