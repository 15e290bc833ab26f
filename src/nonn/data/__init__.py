"""Datasets as uint8 tensors with official train/test splits, a seeded val split, and batched augmentation."""

from nonn.data.augment import augment_batch, crop_and_flip
from nonn.data.dataset import AugmentSpec, Dataset, Split
from nonn.data.download import download
from nonn.data.fetch import Source, default_data_dir
from nonn.data.load import load_dataset
from nonn.data.normalize import channel_stats, normalize
from nonn.data.registry import DATASETS, dataset_names

__all__ = [
    "AugmentSpec",
    "DATASETS",
    "Dataset",
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
]
