"""Segmentation metrics: Dice, IoU, pixel error, HD95, the ISBI adapted Rand error and instance
scores (DSB 2018, F1, panoptic quality, SEG, merges and splits)."""

from __future__ import annotations

from unetkit.metrics.evaluate import ImageResult, Report, aggregate, evaluate_pair
from unetkit.metrics.instance_report import InstanceReport, instance_report
from unetkit.metrics.instances import (
    DSB_THRESHOLDS,
    InstanceScores,
    Overlap,
    aggregate_instance_scores,
    dsb_score,
    instance_scores,
    match_instances,
    overlap_table,
)
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
    "DSB_THRESHOLDS",
    "ImageResult",
    "InstanceReport",
    "InstanceScores",
    "Overlap",
    "Report",
    "adapted_rand_error",
    "aggregate",
    "aggregate_instance_scores",
    "confusion_matrix",
    "dice",
    "dice_from_confusion",
    "directed_surface_distances",
    "dsb_score",
    "evaluate_pair",
    "foreground_segments",
    "hd95",
    "instance_report",
    "instance_scores",
    "iou",
    "iou_from_confusion",
    "match_instances",
    "overlap_table",
    "pixel_error",
    "pixel_error_from_confusion",
    "rand_error",
    "surface",
]
