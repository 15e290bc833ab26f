"""augment_batch and crop_and_flip: shapes, dtypes, identity, flips, valid and varied crops."""

from __future__ import annotations

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nonn.data import AugmentSpec, augment_batch, crop_and_flip

FAST = settings(max_examples=25, deadline=None)


def reference_crop(img: torch.Tensor, pad: int, top: int, left: int, flip: bool) -> torch.Tensor:
    """One image, the slow obvious way."""
    c, h, w = img.shape
    padded = torch.zeros((c, h + 2 * pad, w + 2 * pad), dtype=img.dtype)
    padded[:, pad : pad + h, pad : pad + w] = img
    out = padded[:, top : top + h, left : left + w]
    return out.flip(-1) if flip else out


def distinct_pixels(n: int, c: int, h: int, w: int, dtype=torch.uint8) -> torch.Tensor:
    """Images whose pixels are all nonzero and (mostly) distinct, so every crop is recognisable."""
    base = (torch.arange(c * h * w) % 250 + 1).view(1, c, h, w)
    return base.repeat(n, 1, 1, 1).to(dtype)


@FAST
@given(
    n=st.integers(0, 5),
    c=st.integers(1, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    pad=st.integers(0, 4),
    flip=st.booleans(),
    floating=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_shape_and_dtype_are_kept(n, c, h, w, pad, flip, floating, seed):
    dtype = torch.float32 if floating else torch.uint8
    x = torch.randint(0, 256, (n, c, h, w)).to(dtype)
    out = augment_batch(x, AugmentSpec(pad, flip), torch.Generator().manual_seed(seed))
    assert out.shape == x.shape
    assert out.dtype == dtype


@FAST
@given(
    n=st.integers(1, 4),
    c=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    seed=st.integers(0, 2**31),
)
def test_pad_zero_without_flip_is_identity(n, c, h, w, seed):
    x = torch.rand(n, c, h, w)
    out = augment_batch(x, AugmentSpec(0, False), torch.Generator().manual_seed(seed))
    assert torch.equal(out, x)


def test_forced_flip_mirrors_every_image():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    zeros = torch.zeros(2, dtype=torch.long)
    out = crop_and_flip(x, 0, zeros, zeros, torch.ones(2, dtype=torch.bool))
    assert torch.equal(out, x.flip(-1))
    assert not torch.equal(out, x)
    assert out[0, 1, 2, 0] == x[0, 1, 2, 4]


@FAST
@given(
    n=st.integers(1, 4),
    c=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    pad=st.integers(0, 3),
    data=st.data(),
)
def test_crop_and_flip_matches_the_per_image_reference(n, c, h, w, pad, data):
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
    top = torch.tensor(data.draw(st.lists(st.integers(0, 2 * pad), min_size=n, max_size=n)))
    left = torch.tensor(data.draw(st.lists(st.integers(0, 2 * pad), min_size=n, max_size=n)))
    flip = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    out = crop_and_flip(x, pad, top, left, flip)
    for i in range(n):
        expected = reference_crop(x[i], pad, int(top[i]), int(left[i]), bool(flip[i]))
        assert torch.equal(out[i], expected), f"image {i}"


def test_every_output_is_a_legal_crop_and_offsets_vary_per_image():
    pad, n = 2, 200
    x = distinct_pixels(n, 2, 5, 6)
    out = augment_batch(x, AugmentSpec(pad, True), torch.Generator().manual_seed(3))
    candidates = {
        (top, left, flip): reference_crop(x[0], pad, top, left, flip)
        for top, left, flip in itertools.product(
            range(2 * pad + 1), range(2 * pad + 1), (False, True)
        )
    }
    seen = set()
    for i in range(n):
        matches = [key for key, cand in candidates.items() if torch.equal(out[i], cand)]
        assert matches, f"image {i} is not any crop of its input"
        seen.add(matches[0])
    # 200 draws over 50 equally likely outcomes: one shared offset per batch would give 1.
    assert len(seen) > 30
    assert {key[2] for key in seen} == {False, True}
    assert {key[0] for key in seen} == set(range(2 * pad + 1))


def test_no_flip_spec_never_flips():
    x = distinct_pixels(64, 1, 4, 4)
    out = augment_batch(x, AugmentSpec(0, False), torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_generator_makes_it_reproducible():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    spec = AugmentSpec(4, True)
    a = augment_batch(x, spec, torch.Generator().manual_seed(7))
    b = augment_batch(x, spec, torch.Generator().manual_seed(7))
    c = augment_batch(x, spec, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_padding_is_zero():
    x = torch.full((1, 1, 3, 3), 9, dtype=torch.uint8)
    out = crop_and_flip(x, 2, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    assert out[0, 0].tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 9]]
