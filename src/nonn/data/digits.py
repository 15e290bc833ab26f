"""scikit-learn's bundled 8×8 digits: no download; a fixed stratified 20% test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nonn.data.dataset import Split
from nonn.data.raw import RawData
from nonn.data.splits import fraction_count, stratified_split

TEST_FRACTION = 0.2
# The test split is a property of the dataset, not of a run: it does not follow the run's seed.
TEST_SEED = 0


def read_digits(files: dict[str, Path]) -> RawData:
    """All 1797 digits, 0..16 rescaled to 0..255, split 80/20 into train and test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    rest, test = stratified_split(bunch.target, fraction_count(len(y), TEST_FRACTION), TEST_SEED)
    whole = Split(x, y)
    classes = [str(int(c)) for c in bunch.target_names]
    return RawData(whole.take(torch.from_numpy(rest)), whole.take(torch.from_numpy(test)), classes)
