"""Segmentation metrics: Dice, IoU, pixel error, HD95 and the ISBI adapted Rand error."""

from __future__ import annotations

from unetkit.metrics.evaluate import ImageResult, Report, aggregate, evaluate_pair
from unetkit.metrics.overlap import (
    confusion_matrix,
    dice,
    dice_from_confusion,
    iou,
    iou_from_confusion,
    pixel_error,
    pixel_error_from_confusion,
)
from unetkit.metrics.rand import adapted_rand_error, foreground_segments, rand_error
from unetkit.metrics.surface import directed_surface_distances, hd95, surface

__all__ = [
    "ImageResult",
    "Report",
    "adapted_rand_error",
    "aggregate",
    "confusion_matrix",
    "dice",
    "dice_from_confusion",
    "directed_surface_distances",
    "evaluate_pair",
    "foreground_segments",
    "hd95",
    "iou",
    "iou_from_confusion",
    "pixel_error",
    "pixel_error_from_confusion",
    "rand_error",
    "surface",
]
