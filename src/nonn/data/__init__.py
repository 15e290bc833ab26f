"""Datasets as uint8 tensors with official train/test splits, a seeded val split, and batched augmentation.

``load_dataset(name)`` loads one of ``dataset_names()``; ``register_dataset(name, read, ...)`` adds a user's own.
"""

from nonn.data.augment import augment_batch, crop_and_flip
from nonn.data.dataset import AugmentSpec, Dataset, Split
from nonn.data.download import download
from nonn.data.fetch import Source, default_data_dir
from nonn.data.load import load_dataset
from nonn.data.normalize import channel_stats, normalize
from nonn.data.raw import RawData
from nonn.data.registry import DATASETS, DatasetEntry, dataset_names, register_dataset

__all__ = [
    "AugmentSpec",
    "DATASETS",
    "Dataset",
    "DatasetEntry",
    "RawData",
    "Source",
    "Split",
    "augment_batch",
    "channel_stats",
    "crop_and_flip",
    "dataset_names",
    "default_data_dir",
    "download",
    "load_dataset",
    "normalize",
    "register_dataset",
]
