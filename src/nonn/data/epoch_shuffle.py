"""Shuffling that is a pure function of (seed, epoch), so a resumed run draws the order the uninterrupted one did."""

from __future__ import annotations

import torch
from torch.utils.data import RandomSampler


class EpochShuffle(RandomSampler):
    """A permutation per epoch from its own generator seeded with (seed, epoch); Lightning calls set_epoch.

    A RandomSampler subclass, so Lightning still sees a shuffled loader (and shuffles under DDP as well); it
    never draws from the global RNG, whose state a resumed run restores only at the start of training."""

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=gen).tolist()
