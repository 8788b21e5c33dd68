"""Datasets on disk and in memory, synthetic data, augmentation and patch sampling."""

from __future__ import annotations

from unetkit.data.augment import AugmentConfig, augment
from unetkit.data.dataset import DatasetReport, Pair, check_dataset, find_pairs, load_dataset
from unetkit.data.sample import Sample
from unetkit.data.sampling import (
    Batch,
    DatasetStats,
    PatchSampler,
    dataset_stats,
    normalize,
    sample_patch,
)
from unetkit.data.synthetic import make_synthetic

__all__ = [
    "AugmentConfig",
    "Batch",
    "DatasetReport",
    "DatasetStats",
    "Pair",
    "PatchSampler",
    "Sample",
    "augment",
    "check_dataset",
    "dataset_stats",
    "find_pairs",
    "load_dataset",
    "make_synthetic",
    "normalize",
    "sample_patch",
]
