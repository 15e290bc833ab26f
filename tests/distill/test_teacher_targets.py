"""The teacher-target cache: the same targets as the live teacher on the same view, and no teacher pass in training."""

from __future__ import annotations

import torch

from nonn.data import AugmentSpec
from nonn.data.augment import crop_and_flip
from nonn.distill import build_nonn
from nonn.distill.batches import BatchPrep
from nonn.distill.distill_module import DistillModule
from nonn.distill.teacher_targets import TargetCache, TargetMaker
from nonn.models import create_model

GROUPS = [[0, 3, 5, 7, 9, 11, 13, 15], [1, 2, 4, 6, 8, 10, 12, 14]]  # 16 of the teacher's 64 final filters


def _teacher():
    torch.manual_seed(0)
    return create_model("wrn-10-1", num_classes=10, in_channels=1).eval()


def _images(n=20):
    return torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_cached_targets_equal_the_live_teacher_on_the_same_view():
    teacher, images = _teacher(), _images()
    prep = BatchPrep([0.5], [0.25], AugmentSpec(pad=2, flip=True))
    for at_form in ("spatial", "pooled"):
        maker = TargetMaker(teacher, "act", GROUPS, at_form, with_at=True)
        cache = TargetCache.build(maker, images, prep, views=3, seed=4, batch_size=8)
        assert cache.logits.shape == (20, 3, 10)
        assert cache.at.shape[:2] == (20, 3)
        assert bool((cache.top <= 4).all() and (cache.left <= 4).all()) and bool(cache.flip.any())
        for v in range(3):
            x = crop_and_flip(images, 2, cache.top[:, v], cache.left[:, v], cache.flip[:, v])
            with torch.no_grad():
                logits, at = maker(prep(x))
            assert torch.allclose(cache.logits[:, v], logits, atol=1e-4)
            assert torch.allclose(cache.at[:, v], at, rtol=1e-3, atol=1e-5)
        maker.remove_hook()


def test_lookup_returns_the_cached_view_and_its_targets():
    teacher, images = _teacher(), _images()
    prep = BatchPrep([0.5], [0.25], AugmentSpec(pad=2, flip=True))
    maker = TargetMaker(teacher, "act", GROUPS, "spatial", with_at=True)
    cache = TargetCache.build(maker, images, prep, views=2, seed=0, batch_size=8)
    idx = torch.tensor([3, 7, 11])
    torch.manual_seed(5)
    x_in, logits, at = cache.lookup(images[idx], idx, prep)
    with torch.no_grad():
        live_logits, live_at = maker(x_in)
    assert torch.allclose(logits, live_logits, atol=1e-4) and torch.allclose(at, live_at, rtol=1e-3, atol=1e-5)
    maker.remove_hook()


def test_enough_views_enumerate_every_distinct_view():
    maker = TargetMaker(_teacher(), "act", GROUPS, "spatial", with_at=False)
    prep = BatchPrep([0.5], [0.25], AugmentSpec(pad=1, flip=True))
    cache = TargetCache.build(maker, _images(4), prep, views=99, seed=0)
    assert cache.views == 18  # 3 x 3 offsets x 2 mirrors
    views = {(int(t), int(l), bool(f)) for t, l, f in zip(cache.top[2], cache.left[2], cache.flip[2])}
    assert len(views) == 18
    maker.remove_hook()


def test_views_collapse_to_one_without_augmentation():
    maker = TargetMaker(_teacher(), "act", GROUPS, "spatial", with_at=False)
    cache = TargetCache.build(maker, _images(), BatchPrep([0.5], [0.25], None), views=5, seed=0)
    assert cache.views == 1 and cache.at.shape == (20, 1, 0)
    assert not bool(cache.top.any() or cache.flip.any())
    maker.remove_hook()


def test_training_with_the_cache_never_runs_the_teacher(monkeypatch):
    """With teacher_views=V the teacher runs V times over the training set before the first epoch, then never."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    teacher, images = _teacher(), _images(32)
    labels = torch.arange(32) % 10
    net = build_nonn(lambda k: create_model("wrn-10-1", num_classes=10, in_channels=1), [8, 8], 10, (3, 3))
    prep = BatchPrep([0.5], [0.25], AugmentSpec(pad=2, flip=True))
    module = DistillModule(net, teacher, "act", GROUPS, prep, alpha=0.9, temperature=4.0, beta=10.0,
                           at_form="spatial", lr=0.05, momentum=0.9, weight_decay=0.0, teacher_views=2,
                           train_images=images, view_seed=0)
    calls = []
    module.teacher.register_forward_hook(lambda *_: calls.append(1))
    monkeypatch.setattr("nonn.distill.teacher_targets.fast_inference", lambda maker, _x: maker)  # count eager calls
    train = DataLoader(TensorDataset(images, labels, torch.arange(32)), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(images, labels), batch_size=16)
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train, val)
    assert len(calls) == 2  # one batch of all 32 images per view, then no teacher pass in 3 epochs of 4 steps
