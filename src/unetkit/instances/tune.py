"""Pick the post-processing parameters on validation images by the DSB 2018 score.

A small grid (:class:`TuneGrid`, 3 x 3 x 2 x 3 = 54 settings by default). The watershed runs
once per (seed threshold, foreground threshold, min seed size), i.e. 18 times per image by
default; the ``min_size`` values only filter its result, which is cheap. The score of a setting
is the mean DSB score over the images (Kaggle's ranking); ties keep the earlier setting in grid
order, and the grid lists the default parameters' values first where it has them, so a flat
score landscape keeps the defaults.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unetkit.instances.postprocess import InstanceParams, relabel, watershed_labels
from unetkit.instances.validate import as_instances
from unetkit.metrics.instances import dsb_score


@dataclass(frozen=True)
class TuneGrid:
    """Candidate values of each :class:`InstanceParams` field."""

    seed_threshold: tuple[float, ...] = (0.5, 0.3, 0.7)
    foreground_threshold: tuple[float, ...] = (0.5, 0.3, 0.7)
    min_seed_size: tuple[int, ...] = (4, 16)
    min_size: tuple[int, ...] = (8, 0, 32)
    split_distance: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name in (
            "seed_threshold",
            "foreground_threshold",
            "min_seed_size",
            "min_size",
            "split_distance",
        ):
            if not getattr(self, name):
                raise ValueError(f"TuneGrid.{name} must list at least one value")
        self.settings()  # every combination must be valid InstanceParams

    def settings(self) -> list[InstanceParams]:
        """Every combination, in grid order (first field slowest)."""
        return [
            InstanceParams(s, f, m, k, d)
            for d, s, f, m, k in itertools.product(
                self.split_distance,
                self.seed_threshold,
                self.foreground_threshold,
                self.min_seed_size,
                self.min_size,
            )
        ]


@dataclass(frozen=True)
class TuneResult:
    """The chosen parameters, their mean DSB score, every setting's score, the time taken and
    the number of images scored."""

    params: InstanceParams
    score: float
    scores: tuple[tuple[InstanceParams, float], ...]
    seconds: float
    images: int = 0


def tune_instance_params(
    probabilities: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    grid: TuneGrid | None = None,
) -> TuneResult:
    """Grid search of the post-processing on validation images (module doc).

    Args:
        probabilities: per image, float ``(3, *spatial)`` boundary-class probabilities of the
            whole image (background, interior, border).
        truths: per image, int ``(*spatial)`` instance truth of the same spatial shape.
        grid: the candidate values; default :class:`TuneGrid()`.

    Returns:
        :class:`TuneResult` with the best setting by mean DSB score over the images.
    """
    if len(probabilities) != len(truths) or not truths:
        raise ValueError(
            f"need the same non-zero number of probability maps and truths, got "
            f"{len(probabilities)} and {len(truths)}"
        )
    g = TuneGrid() if grid is None else grid
    start = time.perf_counter()
    truth_maps = [as_instances(t, f"truths[{i}]") for i, t in enumerate(truths)]
    settings = g.settings()
    totals = dict.fromkeys(settings, 0.0)
    for probs, truth in zip(probabilities, truth_maps, strict=True):
        if np.shape(probs)[1:] != truth.shape:
            raise ValueError(
                f"probabilities {np.shape(probs)} do not match truth shape {truth.shape}"
            )
        for d, s, f, m in itertools.product(
            g.split_distance, g.seed_threshold, g.foreground_threshold, g.min_seed_size
        ):
            raw = watershed_labels(
                probs, seed_threshold=s, foreground_threshold=f, min_seed_size=m, split_distance=d
            )
            for k in g.min_size:
                totals[InstanceParams(s, f, m, k, d)] += dsb_score(relabel(raw, min_size=k), truth)
    n = len(truth_maps)
    scores = tuple((p, totals[p] / n) for p in settings)
    best, best_score = scores[0]
    for p, sc in scores[1:]:
        if sc > best_score:
            best, best_score = p, sc
    return TuneResult(best, best_score, scores, time.perf_counter() - start, n)
