"""Instance scores against hand-made cases worked out by hand, and a per-pair loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetkit.metrics import (
    DSB_THRESHOLDS,
    aggregate_instance_scores,
    dsb_score,
    instance_scores,
    match_instances,
    overlap_table,
)

# Case A (1D, 16 px):
#   truth 1 = px 0-3 (4 px), truth 2 = px 5-9 (5 px)
#   pred  1 = px 0-3 (IoU 1 with truth 1), pred 7 = px 6-10 (5 px; with truth 2: inter 6-9 = 4,
#   union 6, IoU 2/3), pred 9 = px 13-14 (on background: a false positive)
TRUTH_A = np.array([1, 1, 1, 1, 0, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0])
PRED_A = np.array([1, 1, 1, 1, 0, 0, 7, 7, 7, 7, 7, 0, 0, 9, 9, 0])
# Case B: one prediction over two touching truth objects of 4 px each: IoU 4/8 = 0.5 with each,
# which is not > 0.5, so nothing matches; it covers all of both -> one merge.
TRUTH_B = np.array([1, 1, 1, 1, 2, 2, 2, 2, 0, 0])
PRED_B = np.array([5, 5, 5, 5, 5, 5, 5, 5, 0, 0])
# Case C: one truth object of 8 px split into pred 1 (px 0-4, IoU 5/8) and pred 2 (px 5-7,
# IoU 3/8), each wholly inside it -> one split.
TRUTH_C = np.array([3, 3, 3, 3, 3, 3, 3, 3, 0])
PRED_C = np.array([1, 1, 1, 1, 1, 2, 2, 2, 0])


def test_case_a_by_hand() -> None:
    s = instance_scores(PRED_A, TRUTH_A)
    assert (s.n_truth, s.n_pred) == (2, 3)
    # IoU 0.5: both truths matched (IoU 1 and 2/3), pred 9 unmatched
    assert (s.tp, s.fp, s.fn) == (2, 1, 0)
    # thresholds 0.50, 0.55, 0.60, 0.65 (< 2/3): TP 2, FP 1, FN 0 -> 2/3;
    # 0.70 ... 0.95: only IoU 1 matches: TP 1, FP 2, FN 1 -> 1/4
    assert s.ap == pytest.approx((2 / 3,) * 4 + (1 / 4,) * 6)
    # DSB = (4 * 2/3 + 6 * 1/4) / 10 = 25/60 = 5/12
    assert s.dsb == pytest.approx(5 / 12)
    assert s.precision == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert s.recall == pytest.approx(1.0)  # 2 / (2 + 0)
    assert s.f1 == pytest.approx(0.8)  # 2*2 / (2*2 + 1 + 0)
    # SQ = (1 + 2/3) / 2 = 5/6; RQ = 2 / (2 + 0.5 + 0) = 0.8; PQ = 5/6 * 0.8 = 2/3
    assert s.sq == pytest.approx(5 / 6)
    assert s.rq == pytest.approx(0.8)
    assert s.pq == pytest.approx(2 / 3)
    # SEG: truth 1 -> pred 1 covers 4/4: J = 1; truth 2 -> pred 7 covers 4/5: J = 2/3
    assert s.seg == pytest.approx(5 / 6)
    assert (s.merges, s.splits) == (0, 0)
    assert dsb_score(PRED_A, TRUTH_A) == pytest.approx(5 / 12)


def test_case_b_merge_by_hand() -> None:
    s = instance_scores(PRED_B, TRUTH_B)
    assert (s.tp, s.fp, s.fn) == (0, 1, 2)
    assert s.dsb == 0.0
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    assert (s.sq, s.rq, s.pq) == (0.0, 0.0, 0.0)
    # the prediction covers each truth wholly (4 > 4/2): J = 4/8 for both -> SEG 0.5
    assert s.seg == pytest.approx(0.5)
    assert (s.merges, s.splits) == (1, 0)


def test_case_c_split_by_hand() -> None:
    s = instance_scores(PRED_C, TRUTH_C)
    # IoU 0.625 with pred 1: matched at 0.50, 0.55, 0.60 -> TP 1, FP 1, FN 0 -> 1/2;
    # from 0.65 on: TP 0, FP 2, FN 1 -> 0. DSB = 3 * 0.5 / 10 = 0.15
    assert s.ap == pytest.approx((0.5,) * 3 + (0.0,) * 7)
    assert s.dsb == pytest.approx(0.15)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.precision == pytest.approx(0.5)
    assert s.recall == pytest.approx(1.0)
    assert s.f1 == pytest.approx(2 / 3)  # 2 / (2 + 1 + 0)
    # PQ = 0.625 / (1 + 0.5) ; SQ = 0.625 ; RQ = 1 / 1.5
    assert s.pq == pytest.approx(0.625 / 1.5)
    assert s.sq == pytest.approx(0.625)
    assert s.rq == pytest.approx(2 / 3)
    assert s.seg == pytest.approx(0.625)  # pred 1 covers 5/8 > half
    assert (s.merges, s.splits) == (0, 1)


def test_both_empty_is_perfect() -> None:
    z = np.zeros((5, 6), dtype=np.int64)
    s = instance_scores(z, z)
    assert (s.n_truth, s.n_pred, s.tp, s.fp, s.fn) == (0, 0, 0, 0, 0)
    for v in (s.dsb, s.precision, s.recall, s.f1, s.sq, s.rq, s.pq, *s.ap):
        assert v == 1.0
    assert math.isnan(s.seg)  # SEG averages over truth objects: there are none
    assert (s.merges, s.splits) == (0, 0)


def test_empty_prediction() -> None:
    s = instance_scores(np.zeros_like(TRUTH_A), TRUTH_A)
    assert (s.tp, s.fp, s.fn) == (0, 0, 2)
    for v in (s.dsb, s.precision, s.recall, s.f1, s.sq, s.rq, s.pq, *s.ap):
        assert v == 0.0
    assert s.seg == 0.0  # each truth object: no prediction covers it -> 0


def test_empty_truth() -> None:
    s = instance_scores(PRED_A, np.zeros_like(PRED_A))
    assert (s.tp, s.fp, s.fn) == (0, 3, 0)
    for v in (s.dsb, s.precision, s.recall, s.f1, s.sq, s.rq, s.pq):
        assert v == 0.0
    assert math.isnan(s.seg)


def test_aggregate_by_hand() -> None:
    a = instance_scores(PRED_A, TRUTH_A)
    b = instance_scores(PRED_B, TRUTH_B)
    agg = aggregate_instance_scores([a, b])
    assert agg.images == 2
    assert agg.dsb == pytest.approx((5 / 12 + 0.0) / 2)  # mean over images
    # counts summed: truth 2+2, pred 3+1, TP 2+0, FP 1+1, FN 0+2
    assert (agg.n_truth, agg.n_pred, agg.tp, agg.fp, agg.fn) == (4, 4, 2, 2, 2)
    assert agg.precision == pytest.approx(0.5)
    assert agg.recall == pytest.approx(0.5)
    assert agg.f1 == pytest.approx(0.5)  # 4 / (4 + 2 + 2)
    # PQ from sums: IoU sum 5/3 over (2 + 1 + 1)
    assert agg.pq == pytest.approx(5 / 12)
    assert agg.sq == pytest.approx(5 / 6)
    # SEG over all four truth objects: (1 + 2/3 + 0.5 + 0.5) / 4 = 2/3
    assert agg.seg == pytest.approx(2 / 3)
    assert (agg.merges, agg.splits) == (1, 0)
    assert agg.ap[0] == pytest.approx((2 / 3 + 0.0) / 2)
    # aggregating aggregates weighs each by its images
    c = instance_scores(PRED_C, TRUTH_C)
    nested = aggregate_instance_scores([agg, c])
    flat = aggregate_instance_scores([a, b, c])
    assert nested.dsb == pytest.approx(flat.dsb)
    assert nested.ap == pytest.approx(flat.ap)
    assert nested.as_dict() == pytest.approx(flat.as_dict(), nan_ok=True)


def test_ids_are_names_only() -> None:
    # renaming ids (non-consecutive, or far above the pixel count) changes nothing
    perm_t = np.where(TRUTH_A > 0, TRUTH_A * 2**40 + 7, 0)
    perm_p = np.where(PRED_A == 1, 65536, np.where(PRED_A == 7, 3, np.where(PRED_A == 9, 1, 0)))
    assert instance_scores(perm_p, perm_t).as_dict() == instance_scores(PRED_A, TRUTH_A).as_dict()


def test_match_instances_pairs() -> None:
    assert match_instances(PRED_A, TRUTH_A) == [(1, 1, 1.0), (2, 7, pytest.approx(2 / 3))]
    assert match_instances(PRED_A, TRUTH_A, threshold=0.7) == [(1, 1, 1.0)]
    assert match_instances(PRED_B, TRUTH_B) == []


def _loop_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[list[float], float]:
    """Reference by explicit loops over every pair: the AP per threshold and the SEG."""
    t_ids = [i for i in np.unique(truth) if i > 0]
    p_ids = [i for i in np.unique(pred) if i > 0]
    iou = np.zeros((len(t_ids), len(p_ids)))
    seg = []
    for a, ti in enumerate(t_ids):
        tm = truth == ti
        best = 0.0
        for b, pj in enumerate(p_ids):
            pm = pred == pj
            inter = np.logical_and(tm, pm).sum()
            iou[a, b] = inter / np.logical_or(tm, pm).sum()
            if inter > tm.sum() / 2:
                best = iou[a, b]
        seg.append(best)
    aps = []
    for t in DSB_THRESHOLDS:
        tp = int((iou > t).sum())
        aps.append(tp / (len(t_ids) + len(p_ids) - tp))
    return aps, float(np.mean(seg))


@pytest.mark.parametrize("shape", [(40, 50), (8, 12, 14)])
def test_agrees_with_pairwise_loops(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    for _ in range(3):
        # blocky random maps so that objects overlap at many IoU levels
        coarse = tuple(max(1, n // 4) for n in shape)
        truth = np.kron(rng.integers(0, 6, coarse), np.ones((4,) * len(shape), dtype=int))
        pred = np.roll(truth, 1, axis=0) * (rng.random(truth.shape) > 0.1)
        pred = np.where(rng.random(truth.shape) < 0.05, 9, pred)
        ap, seg = _loop_scores(pred, truth)
        s = instance_scores(pred, truth)
        assert s.ap == pytest.approx(tuple(ap))
        assert s.seg == pytest.approx(seg)


def test_overlap_table_counts() -> None:
    ov = overlap_table(PRED_A, TRUTH_A)
    assert ov.truth_sizes.tolist() == [4, 5]
    assert ov.pred_sizes.tolist() == [4, 5, 2]
    pairs = sorted(
        zip(ov.truth_index.tolist(), ov.pred_index.tolist(), ov.intersection.tolist(), strict=True)
    )
    assert pairs == [(0, 0, 4), (1, 1, 4)]


def test_full_cover_without_background() -> None:
    # no background pixel at all: ids still counted right
    t = np.array([[1, 1], [2, 2]])
    p = np.array([[4, 4], [4, 4]])
    s = instance_scores(p, t)
    assert (s.n_truth, s.n_pred, s.tp) == (2, 1, 0)
    # IoU 2/4 = 0.5 with each truth: not > 0.5, so nothing matches; it covers both: one merge
    assert s.merges == 1
    assert s.seg == pytest.approx(0.5)
    huge = instance_scores(p * 2**40, np.where(t == 1, 2**41, t))  # the sorting path
    assert huge.as_dict() == pytest.approx(s.as_dict(), nan_ok=True)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="same shape"):
        instance_scores(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="non-negative"):
        instance_scores(np.array([-1, 0]), np.array([0, 0]))
    with pytest.raises(ValueError, match="integer"):
        instance_scores(np.zeros(3), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"\[0.5, 1\)"):
        instance_scores(PRED_A, TRUTH_A, thresholds=(0.3,))
    with pytest.raises(ValueError, match="at least one"):
        aggregate_instance_scores([])
