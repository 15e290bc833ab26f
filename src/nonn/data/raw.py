"""What a dataset reader returns: the official train and test splits and the class names."""

from __future__ import annotations

from typing import NamedTuple

from nonn.data.dataset import Split


class RawData(NamedTuple):
    train: Split
    test: Split
    classes: list[str]
