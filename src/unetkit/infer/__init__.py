"""Prediction: tiled, seam-free (valid mode) or Gaussian-blended (same mode), with TTA.

``predict(model, image)`` returns labels; ``predict_probabilities`` class probabilities;
``predict_full`` both. Files and folders are predicted by :mod:`unetkit.infer.files`.
"""

from unetkit.infer.engine import run_network
from unetkit.infer.normalization import Normalization
from unetkit.infer.predictor import (
    Prediction,
    PredictOptions,
    predict,
    predict_array,
    predict_full,
    predict_probabilities,
)
from unetkit.infer.tiling import TilePlan, plan_tiles

__all__ = [
    "Normalization",
    "PredictOptions",
    "Prediction",
    "TilePlan",
    "plan_tiles",
    "predict",
    "predict_array",
    "predict_full",
    "predict_probabilities",
    "run_network",
]
