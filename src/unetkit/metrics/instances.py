"""Instance segmentation scores: objects matched by IoU, from one contingency table.

Inputs are two instance maps ``(*spatial)`` (1D/2D/3D) of the same shape: 0 = background, each
positive id one object (ids need not be consecutive). Every score below comes from the sparse
contingency table of the two maps (:func:`overlap_table`: object sizes and the intersection of
every overlapping truth/prediction pair, by ``np.bincount`` over the pixels, no loop over pairs).

* **Matching at IoU threshold t** (``t >= 0.5``): a truth and a predicted object match when
  their IoU is **greater than** ``t`` (as in the Kaggle DSB 2018 evaluation). For ``t >= 0.5``
  an object can match at most one other, so no assignment problem arises. ``TP`` = matched
  pairs, ``FP`` = unmatched predictions, ``FN`` = unmatched truth objects.
* **DSB 2018 score**: mean over ``t = 0.50, 0.55, ..., 0.95`` of ``TP / (TP + FP + FN)``.
* **Precision, recall, F1** at IoU 0.5: ``TP/(TP+FP)``, ``TP/(TP+FN)``, ``2TP/(2TP+FP+FN)``.
* **Panoptic quality** (Kirillov et al. 2019) at IoU 0.5: ``SQ`` = mean IoU of the matched pairs,
  ``RQ = TP / (TP + FP/2 + FN/2)``, ``PQ = SQ * RQ``; ``SQ = 0`` when nothing matches.
* **SEG** (Cell Tracking Challenge): for each truth object, the Jaccard index with the predicted
  object that covers more than half of it, 0 when none does; the mean over truth objects.
  It does not count false positives. ``NaN`` for an image without truth objects.
* **Merges**: predicted objects that cover more than half of each of two or more truth objects.
  **Splits**: truth objects that hold more than half of each of two or more predicted objects.

Empty maps: when neither map has an object every score is 1 (nothing to find, nothing wrongly
found) except SEG (``NaN``); when exactly one is empty the ratios whose denominator is 0 are 0.

Over several images (:func:`aggregate_instance_scores`): the DSB score and the per-threshold
scores are **means over images**, as Kaggle ranked the DSB 2018; counts (objects, TP, FP, FN,
merges, splits) are **summed**; precision, recall, F1, SQ, RQ and PQ are computed from the summed
counts and IoUs (as the COCO panoptic evaluation does); SEG is the mean over **all** truth
objects of all images (as the CTC computes it over a whole sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unetkit.metrics._checks import as_label_map, same_shape

DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class Overlap:
    """Sparse contingency table of a truth and a predicted instance map.

    Attributes:
        truth_sizes: ``(n_truth,)`` pixels of each truth object (ids in increasing order).
        pred_sizes: ``(n_pred,)`` pixels of each predicted object.
        truth_index, pred_index: ``(m,)`` indices into the size arrays of each overlapping pair.
        intersection: ``(m,)`` shared pixels of each pair (all ``> 0``).
    """

    truth_sizes: np.ndarray
    pred_sizes: np.ndarray
    truth_index: np.ndarray
    pred_index: np.ndarray
    intersection: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """``(m,)`` float64 IoU of each overlapping pair."""
        union = (
            self.truth_sizes[self.truth_index]
            + self.pred_sizes[self.pred_index]
            - self.intersection
        )
        return self.intersection / union


def _dense_index(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ids ``(N,)`` to ``0`` (background) and ``1..n``; return ``(index, sizes of 1..n)``.

    ``1..n`` follow increasing id. A lookup table (``np.bincount``, O(N)) when the largest id is
    not far above the pixel count, else a sort (``np.unique``).
    """
    top = int(ids.max()) if ids.size else 0
    if top <= 4 * ids.size + 65536:
        counts = np.bincount(ids, minlength=1)
        present = counts > 0
        present[0] = True  # background keeps slot 0 whether or not it occurs
        lookup = np.cumsum(present) - 1
        return lookup[ids], counts[present][1:]
    uniq, index = np.unique(ids, return_inverse=True)
    index = index.ravel()
    if uniq[0] != 0:  # no background pixel: shift so that 0 stays background
        index = index + 1
        uniq = np.concatenate([[0], uniq])
    sizes = np.bincount(index, minlength=uniq.size)[1:]
    return index, sizes


def _pair_counts(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of ``keys`` (each in ``[0, n_keys)``) with their counts, sorted."""
    if n_keys <= 4 * keys.size + 65536:
        counts = np.bincount(keys, minlength=n_keys)
        pairs = np.flatnonzero(counts)
        return pairs, counts[pairs]
    return np.unique(keys, return_counts=True)


def overlap_table(pred: np.ndarray, truth: np.ndarray) -> Overlap:
    """The contingency table of ``pred`` and ``truth``, int ``(*spatial)`` each (module doc)."""
    p = as_label_map(pred, "pred")
    t = as_label_map(truth, "truth")
    same_shape(p, t, "pred", "truth")
    if (p < 0).any() or (t < 0).any():
        raise ValueError("instance ids must be non-negative (0 = background)")
    p_idx, p_sizes = _dense_index(p.ravel())
    t_idx, t_sizes = _dense_index(t.ravel())
    both = (p_idx > 0) & (t_idx > 0)
    n_p = max(p_sizes.size, 1)
    key = (t_idx[both] - 1).astype(np.int64) * n_p + (p_idx[both] - 1)
    pairs, inter = _pair_counts(key, t_sizes.size * n_p)
    return Overlap(
        truth_sizes=t_sizes,
        pred_sizes=p_sizes,
        truth_index=pairs // n_p,
        pred_index=pairs % n_p,
        intersection=inter,
    )


@dataclass(frozen=True)
class InstanceScores:
    """Instance scores of one image, or aggregated over images (module doc).

    ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``sq``, ``rq`` and ``pq`` are at
    IoU 0.5; ``ap`` holds ``TP / (TP + FP + FN)`` at each of ``thresholds`` and ``dsb`` its mean.
    ``iou_sum`` (IoUs of the matched pairs) and ``seg_sum`` (the per-truth-object Jaccards) let
    results be aggregated exactly; ``images`` is how many images the scores cover.
    """

    n_truth: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    dsb: float
    ap: tuple[float, ...]
    thresholds: tuple[float, ...]
    sq: float
    rq: float
    pq: float
    iou_sum: float
    seg: float
    seg_sum: float
    merges: int
    splits: int
    images: int = 1

    def as_dict(self) -> dict[str, float | int]:
        """Scalar scores by name, ``ap`` spread as ``ap@0.50`` ... (for tables, JSON, CSV)."""
        out: dict[str, float | int] = {
            "dsb": self.dsb,
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "pq": self.pq,
            "sq": self.sq,
            "rq": self.rq,
            "seg": self.seg,
            "n_truth": self.n_truth,
            "n_pred": self.n_pred,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "merges": self.merges,
            "splits": self.splits,
        }
        out.update({f"ap@{t:.2f}": a for t, a in zip(self.thresholds, self.ap, strict=True)})
        return out


def _ratio(num: float, den: float, *, both_empty: bool) -> float:
    if den > 0:
        return float(num) / float(den)
    return 1.0 if both_empty else 0.0


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    ts = tuple(float(t) for t in thresholds)
    if not ts or any(not 0.5 <= t < 1.0 for t in ts):
        raise ValueError(
            f"IoU thresholds must be in [0.5, 1) (one-to-one matching), got {thresholds!r}"
        )
    return ts


def _finish(
    n_truth: int,
    n_pred: int,
    tp_at: np.ndarray,
    ap: tuple[float, ...],
    thresholds: tuple[float, ...],
    iou_sum: float,
    seg_sum: float,
    merges: int,
    splits: int,
    images: int,
    dsb: float | None = None,
) -> InstanceScores:
    """Scores from counts: ``tp_at`` ``(T,)`` matches per threshold, 0.5 first if present."""
    empty = n_truth == 0 and n_pred == 0
    tp = int(tp_at[0])
    fp, fn = n_pred - tp, n_truth - tp
    return InstanceScores(
        n_truth=n_truth,
        n_pred=n_pred,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp, both_empty=empty),
        recall=_ratio(tp, tp + fn, both_empty=empty),
        f1=_ratio(2 * tp, 2 * tp + fp + fn, both_empty=empty),
        dsb=float(np.mean(ap)) if dsb is None else dsb,
        ap=ap,
        thresholds=thresholds,
        sq=_ratio(iou_sum, tp, both_empty=empty),
        rq=_ratio(tp, tp + 0.5 * fp + 0.5 * fn, both_empty=empty),
        pq=_ratio(iou_sum, tp + 0.5 * fp + 0.5 * fn, both_empty=empty),
        iou_sum=iou_sum,
        seg=seg_sum / n_truth if n_truth else float("nan"),
        seg_sum=seg_sum,
        merges=merges,
        splits=splits,
        images=images,
    )


def instance_scores(
    pred: np.ndarray, truth: np.ndarray, *, thresholds: Sequence[float] = DSB_THRESHOLDS
) -> InstanceScores:
    """All instance scores of one image (module doc).

    Args:
        pred: int ``(*spatial)`` predicted instance ids, 0 = background.
        truth: int ``(*spatial)`` truth instance ids, same shape.
        thresholds: IoU thresholds of the DSB score, each in ``[0.5, 1)``; the scores at "IoU
            0.5" (precision, recall, F1, PQ, TP/FP/FN) always use 0.5 whatever this holds.
    """
    ts = _check_thresholds(thresholds)
    ov = overlap_table(pred, truth)
    n_t, n_p = int(ov.truth_sizes.size), int(ov.pred_sizes.size)
    iou = ov.iou
    all_t = np.asarray((0.5, *ts))
    tp_at = (iou[None, :] > all_t[:, None]).sum(axis=1)
    empty = n_t == 0 and n_p == 0
    ap = tuple(_ratio(k, n_t + n_p - k, both_empty=empty) for k in tp_at[1:].tolist())
    iou_sum = float(iou[iou > 0.5].sum())
    # truth object covered more than half by a prediction; prediction more than half in a truth
    covers = 2 * ov.intersection > ov.truth_sizes[ov.truth_index]
    inside = 2 * ov.intersection > ov.pred_sizes[ov.pred_index]
    seg_sum = float(iou[covers].sum())
    merges = int((np.bincount(ov.pred_index[covers], minlength=n_p) >= 2).sum())
    splits = int((np.bincount(ov.truth_index[inside], minlength=n_t) >= 2).sum())
    return _finish(n_t, n_p, tp_at, ap, ts, iou_sum, seg_sum, merges, splits, images=1)


def dsb_score(
    pred: np.ndarray, truth: np.ndarray, *, thresholds: Sequence[float] = DSB_THRESHOLDS
) -> float:
    """The Data Science Bowl 2018 score of one image (module doc); 1.0 when both are empty."""
    return instance_scores(pred, truth, thresholds=thresholds).dsb


def match_instances(
    pred: np.ndarray, truth: np.ndarray, *, threshold: float = 0.5
) -> list[tuple[int, int, float]]:
    """Matched pairs ``(truth id, predicted id, IoU)`` with ``IoU > threshold`` (``>= 0.5``).

    Sorted by truth id; each id appears at most once.
    """
    (t,) = _check_thresholds([threshold])
    p_arr = as_label_map(pred, "pred")
    t_arr = as_label_map(truth, "truth")
    ov = overlap_table(p_arr, t_arr)
    t_ids = np.unique(t_arr[t_arr > 0])
    p_ids = np.unique(p_arr[p_arr > 0])
    iou = ov.iou
    keep = np.flatnonzero(iou > t)
    keep = keep[np.argsort(ov.truth_index[keep], kind="stable")]
    return [
        (int(t_ids[ov.truth_index[k]]), int(p_ids[ov.pred_index[k]]), float(iou[k])) for k in keep
    ]


def aggregate_instance_scores(scores: Sequence[InstanceScores]) -> InstanceScores:
    """Scores over several images (module doc): DSB averaged over images, counts summed.

    Raises:
        ValueError: no scores, or scores computed at different thresholds.
    """
    if not scores:
        raise ValueError("aggregate_instance_scores needs at least one result")
    ts = scores[0].thresholds
    if any(s.thresholds != ts for s in scores):
        raise ValueError("all scores must use the same IoU thresholds")
    n_t = sum(s.n_truth for s in scores)
    n_p = sum(s.n_pred for s in scores)
    tp = sum(s.tp for s in scores)
    weights = np.asarray([s.images for s in scores], dtype=np.float64)  # images behind each
    ap = tuple(
        float(np.average([s.ap[i] for s in scores], weights=weights)) for i in range(len(ts))
    )
    return _finish(
        n_t,
        n_p,
        np.asarray([tp]),
        ap,
        ts,
        iou_sum=float(sum(s.iou_sum for s in scores)),
        seg_sum=float(sum(s.seg_sum for s in scores)),
        merges=sum(s.merges for s in scores),
        splits=sum(s.splits for s in scores),
        images=sum(s.images for s in scores),
        dsb=float(np.average([s.dsb for s in scores], weights=weights)),
    )
