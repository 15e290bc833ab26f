"""`nonn bench-train`: images per second of the teacher stage and of the student stage, old path against new.

Old: the teacher runs on every student batch. New: its targets are made once for V views (the cache build,
timed on its own) and every batch reads them. Both paths run the same DistillModule code on the same
batches; the rounds interleave teacher, old and new so that the machine's drift hits all three alike, and
the report gives the median of each and of the within-round ratios. Untrained weights: speed does not
depend on them.
"""

from __future__ import annotations

import statistics
import time

import torch

from .. import atomic
from ..config import Config
from ..distill.batches import BatchPrep
from ..distill.distill_module import DistillModule
from ..distill.nonn_model import build_nonn
from ..distill.teacher_targets import TargetCache
from ..models import create_model, probe_feature_shape
from ..stages.common import dataset_for


def _timed(fn, batches: int) -> float:
    """Seconds per call of ``fn(i)``, over ``batches`` calls after one warm-up."""
    fn(0)
    start = time.perf_counter()
    for i in range(batches):
        fn(i + 1)
    return (time.perf_counter() - start) / batches


def bench_train(cfg: Config, *, batches: int = 10, rounds: int = 3, out=None) -> dict:
    """Measure in ``rounds`` interleaved rounds of ``batches`` training steps each; returns the figures."""
    torch.manual_seed(0)
    ds = dataset_for(cfg)
    bs = cfg.data.batch_size
    sc = cfg.students
    n_need = bs * (batches + 1)
    images = ds.train.x[:n_need]
    labels = ds.train.y[:n_need]
    if len(images) < n_need:
        reps = -(-n_need // len(images))
        images, labels = images.repeat(reps, 1, 1, 1)[:n_need], labels.repeat(reps)[:n_need]
    prep = BatchPrep(ds.mean, ds.std, ds.augment if cfg.data.augment else None)
    teacher = create_model(cfg.teacher.arch, num_classes=ds.num_classes, in_channels=ds.input_shape[0])
    fshape = probe_feature_shape(teacher, cfg.teacher.feature_module, tuple(ds.input_shape))
    k = int(sc.k)
    groups = [g.tolist() for g in torch.randperm(fshape[0]).chunk(k)]  # sizes, not grouping, set the speed
    net = build_nonn(lambda _k: create_model(sc.arch, num_classes=ds.num_classes, in_channels=ds.input_shape[0]),
                     [len(g) for g in groups], ds.num_classes, tuple(fshape[1:]))
    module = DistillModule(net, teacher, cfg.teacher.feature_module, groups, prep, alpha=sc.alpha,
                           temperature=sc.temperature, beta=sc.resolved_beta(), at_form=sc.at_form, lr=sc.lr,
                           momentum=sc.momentum, weight_decay=sc.weight_decay)
    module.on_fit_start()  # the live teacher's feature hook
    module.train()
    s_opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    t_train = create_model(cfg.teacher.arch, num_classes=ds.num_classes, in_channels=ds.input_shape[0]).train()
    t_opt = torch.optim.SGD(t_train.parameters(), lr=0.01, momentum=0.9)
    views = max(1, sc.resolved_teacher_views())
    idx_all = torch.arange(n_need)

    def batch(i):
        sl = slice(i * bs, (i + 1) * bs)
        return images[sl], labels[sl], idx_all[sl]

    def teacher_step(i):
        x, y, _ = batch(i)
        loss = torch.nn.functional.cross_entropy(t_train(prep(x, train=True)), y)
        t_opt.zero_grad(set_to_none=True)
        loss.backward()
        t_opt.step()

    def student_step(x_in, y, targets):
        _, terms = module(x_in, y, targets)
        s_opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        s_opt.step()

    def old_step(i):
        x, y, _ = batch(i)
        student_step(prep(x, train=True), y, None)

    cache_holder: dict = {}

    def new_step(i):
        x, y, idx = batch(i)
        x_in, t_logits, t_at = cache_holder["cache"].lookup(x, idx, prep)
        student_step(x_in, y, (t_logits, t_at))

    figures = {"teacher": [], "old": [], "new": [], "build": []}
    for _ in range(rounds):
        figures["teacher"].append(bs / _timed(teacher_step, batches))
        figures["old"].append(bs / _timed(old_step, batches))
        start = time.perf_counter()
        cache_holder["cache"] = TargetCache.build(module.target_maker, images, prep, views, seed=0, batch_size=bs)
        built = cache_holder["cache"].views * n_need
        figures["build"].append(built / (time.perf_counter() - start))
        figures["new"].append(bs / _timed(new_step, batches))
    module.on_fit_end()
    epochs = sc.epochs
    med = {name: statistics.median(v) for name, v in figures.items()}
    # The stage as a whole: per image, E epochs of new steps plus V teacher passes of the cache build.
    amortised = [epochs / (epochs / new + views / build) for new, build in zip(figures["new"], figures["build"])]
    result = {
        "config": {"dataset": cfg.data.name, "input_shape": list(ds.input_shape), "batch_size": bs,
                   "teacher": cfg.teacher.arch, "students": f"{k} x {sc.arch}", "at_form": sc.at_form,
                   "epochs": epochs, "teacher_views": views, "batches_per_round": batches, "rounds": rounds,
                   "threads": torch.get_num_threads()},
        "img_per_s": {"teacher_stage": med["teacher"], "students_old": med["old"], "students_new_epoch": med["new"],
                      "cache_build": med["build"],
                      "students_new_stage": statistics.median(amortised)},
        "speedup": {
            "epoch": statistics.median(n / o for n, o in zip(figures["new"], figures["old"])),
            "stage": statistics.median(a / o for a, o in zip(amortised, figures["old"])),
        },
        "rounds": figures,
    }
    if out is not None:
        from pathlib import Path
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / "bench_train.json", result)
        atomic.write_text(out / "bench_train.md", format_table(result))
    return result


def format_table(r: dict) -> str:
    c, f, s = r["config"], r["img_per_s"], r["speedup"]
    lines = [
        f"{c['dataset']} {'x'.join(map(str, c['input_shape']))}, batch {c['batch_size']}, {c['threads']} threads; "
        f"teacher {c['teacher']}, students {c['students']}, {c['epochs']} epochs, {c['teacher_views']} cached views "
        f"(median of {c['rounds']} interleaved rounds of {c['batches_per_round']} steps)",
        "",
        "| path | images/s |",
        "|---|---|",
        f"| teacher stage (training step) | {f['teacher_stage']:.0f} |",
        f"| student stage, old: teacher forward on every batch | {f['students_old']:.0f} |",
        f"| student stage, new: epoch reading cached targets | {f['students_new_epoch']:.0f} |",
        f"| cache build (teacher, traced, per view) | {f['cache_build']:.0f} |",
        f"| student stage, new: whole stage ({c['epochs']} epochs + {c['teacher_views']} views) | "
        f"{f['students_new_stage']:.0f} |",
        "",
        f"Speed-up of the student stage: **{s['stage']:.2f}x** for the whole stage, {s['epoch']:.2f}x per epoch "
        "after the cache is built.",
    ]
    return "\n".join(lines) + "\n"
