"""Datasets on disk and in memory, synthetic data, augmentation and patch sampling."""

from __future__ import annotations

from unetkit.data.sample import Sample
from unetkit.data.synthetic import make_synthetic

__all__ = ["Sample", "make_synthetic"]
