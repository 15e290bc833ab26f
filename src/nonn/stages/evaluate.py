"""Evaluation stage: test accuracy, parameters, MACs and bytes per inference, into metrics.json and a table.

`evaluate_nonn` is the in-memory layer (any teacher, any loader); `run` the run-directory wrapper."""

from __future__ import annotations

import json
from typing import Iterable

import torch

from .. import atomic
from ..budget import Budget, Cost
from ..distill.batches import IdentityPrep
from ..distill.nonn_model import NoNN
from ..models.cost import FLOAT32_BYTES, count_macs, count_params, weight_bytes
from ..rundir import RunDir, file_sha256
from . import sizing
from .common import accuracy_on, batch_prep, dataset_for, load_students, load_teacher, loader

EVAL_BATCH = 256


def inputs_hash(rd: RunDir) -> str:
    cfg = rd.load_config()
    return cfg.slice_hash("data", "budget", extra={"teacher": rd.input_sha256(rd.teacher), "students": rd.input_sha256(rd.students)})


TEACHER_EVAL = "teacher_eval.json"


def teacher_test_accuracy(rd: RunDir, teacher, ds, prep) -> float:
    """The teacher's test accuracy, kept in RUN_DIR/teacher_eval.json with the teacher's SHA-256 and the data
    slice's hash, so runs that share one teacher (an ablation's) evaluate it once."""
    key = {"teacher_sha256": file_sha256(rd.teacher), "data": rd.load_config().slice_hash("data")}
    path = rd.path / TEACHER_EVAL
    try:
        saved = json.loads(path.read_text())
        if all(saved.get(k) == v for k, v in key.items()):
            return float(saved["accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    acc = accuracy_on(teacher, ds.test, prep)
    atomic.write_json(path, {**key, "accuracy": acc})
    return acc


@torch.no_grad()
def _accuracy(model, batches: Iterable, prep, **kwargs) -> tuple[float, int]:
    """(accuracy, images) of `model` over batches of (x, y); the mean is taken in float32, as accuracy_on does."""
    model.eval()
    hits = [model(prep(x), **kwargs).argmax(dim=1) == y for x, y, *_ in batches]
    if not hits:
        return float("nan"), 0
    hit = torch.cat(hits)
    return float(hit.float().mean()), len(hit)


def evaluate_nonn(teacher: torch.nn.Module, net: NoNN, test: Iterable, *, input_shape: tuple[int, int, int],
                  prep=None, budget: Budget | None = None, dtype_bytes: int = FLOAT32_BYTES,
                  archs: list[str] | None = None, teacher_accuracy: float | None = None) -> dict:
    """Test accuracy of the teacher and of the NoNN (also with each student missing), and the parameters,
    weight bytes, MACs and bytes sent of each part: the "teacher" and "nonn" entries of metrics.json.

    `test` yields (x, y) batches and may be iterated several times (a DataLoader)."""
    prep = prep or IdentityPrep()
    image = torch.zeros(1, *input_shape)
    k = len(net.students)
    students = []
    for i, node in enumerate(net.students):
        params = count_params(node)
        cost = Cost(params, weight_bytes(params, dtype_bytes), count_macs(node, image), node.num_filters)
        students.append({
            "arch": archs[i] if archs else None,
            "params": cost.params,
            "weight_bytes": cost.weight_bytes,
            "macs": cost.macs,
            "filters": cost.filters,
            "bytes_sent": cost.filters * FLOAT32_BYTES,  # one float32 per filter of its pooled vector
        })
        if budget is not None:
            students[-1]["fits_budget"] = budget.fits(cost)
    head_in = torch.zeros(1, sum(net.partition_sizes))
    full_acc, images = _accuracy(net, test, prep)
    missing = []
    if k > 1:
        for drop in range(k):
            keep = torch.ones(k)
            keep[drop] = 0.0
            missing.append(_accuracy(net, test, prep, keep=keep)[0])
    return {
        "test_images": images,
        "teacher": {
            "accuracy": _accuracy(teacher, test, prep)[0] if teacher_accuracy is None else teacher_accuracy,
            "params": count_params(teacher),
            "weight_bytes": weight_bytes(teacher, dtype_bytes),
            "macs": count_macs(teacher, image),
        },
        "nonn": {
            "accuracy": full_acc,
            "params_total": count_params(net),
            "head": {"params": count_params(net.head), "macs": count_macs(net.head, head_in)},
            "students": students,
            "accuracy_missing_student": missing,
        },
    }


def run(rd: RunDir, log=print) -> dict:
    cfg = rd.load_config()
    ds = dataset_for(cfg)
    prep = batch_prep(ds, cfg)
    teacher, _ = load_teacher(rd)
    net, sckpt = load_students(rd)
    dtype_bytes = cfg.budget.dtype_bytes
    budget = sizing.budget_of(cfg)
    found = evaluate_nonn(teacher, net, loader(ds.test, EVAL_BATCH, shuffle=False), input_shape=tuple(ds.input_shape),
                          prep=prep, budget=budget, dtype_bytes=dtype_bytes, archs=sckpt["archs"],
                          teacher_accuracy=teacher_test_accuracy(rd, teacher, ds, prep))
    metrics = {
        "dataset": cfg.data.name,
        "k": len(net.students),
        "test_images": found["test_images"],
        "teacher": {"arch": cfg.teacher.arch, **found["teacher"]},
        "nonn": found["nonn"],
        "budget": None if budget is None else {"memory_bytes": budget.memory_bytes, "macs": budget.macs,
                                               "dtype_bytes": dtype_bytes,
                                               "teacher_weight_bytes": found["teacher"]["weight_bytes"]},
        "inputs_hash": inputs_hash(rd),
    }
    atomic.write_json(rd.metrics, metrics)
    return metrics


def format_table(m: dict) -> str:
    """The metrics as a plain-text table."""
    t = m["teacher"]
    rows = [("model", "accuracy", "params", "MACs", "filters", "bytes sent")]
    rows.append((f"teacher {t['arch']}", f"{100 * t['accuracy']:.2f}%", f"{t['params']:,}", f"{t['macs']:,}", "", ""))
    n = m["nonn"]
    rows.append((f"NoNN K={m['k']}", f"{100 * n['accuracy']:.2f}%", f"{n['params_total']:,}",
                 f"{sum(s['macs'] for s in n['students']) + n['head']['macs']:,}", "", ""))
    for i, s in enumerate(n["students"]):
        acc = f"{100 * n['accuracy_missing_student'][i]:.2f}% w/o" if n["accuracy_missing_student"] else ""
        rows.append((f"  student {i} {s['arch']}", acc, f"{s['params']:,}", f"{s['macs']:,}", str(s["filters"]),
                     str(s["bytes_sent"])))
    rows.append(("  head (Linear)", "", f"{n['head']['params']:,}", f"{n['head']['macs']:,}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + f"\n(test split of {m['dataset']}: {m['test_images']} images)"
