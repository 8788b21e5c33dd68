"""evaluate_pair and aggregate: conventions for absent classes, HD95 penalties and outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from unetkit.metrics import aggregate, evaluate_pair


def _squares() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((8, 10), dtype=np.int64)
    pred = np.zeros_like(truth)
    truth[2:6, 2:6] = 1
    pred[2:6, 4:8] = 1
    return pred, truth


def test_single_pair_values() -> None:
    pred, truth = _squares()
    r = evaluate_pair(pred, truth, num_classes=2, name="a")
    assert r.dice[1] == pytest.approx(0.5)
    assert r.iou[1] == pytest.approx(8 / 24)
    assert r.pixel_error == pytest.approx(16 / 80)
    # square surfaces shifted by 2 columns: every directed distance is 0 (shared rows) or 2
    assert 0 < r.hd95[1] <= 2.0
    assert r.rand_error is None


def test_aggregate_absent_and_one_sided() -> None:
    pred, truth = _squares()
    r1 = evaluate_pair(pred, truth, num_classes=3)  # class 2 absent in both -> NaN
    truth2 = truth.copy()
    truth2[0, 0] = 2  # class 2 only in the truth -> Dice 0, HD95 inf
    r2 = evaluate_pair(pred, truth2, num_classes=3)
    assert np.isnan(r1.dice[2]) and np.isnan(r1.hd95[2])
    assert r2.dice[2] == 0.0 and r2.hd95[2] == math.inf
    rep = aggregate([r1, r2])
    assert rep.counts["dice"][2] == 1
    assert rep.per_class["dice"][2] == 0.0
    assert rep.hd95_penalised[2] == 1
    assert rep.per_class["hd95"][2] == pytest.approx(math.hypot(7, 9))  # image diagonal
    fg_dice = (rep.per_class["dice"][1] + rep.per_class["dice"][2]) / 2
    assert rep.mean["dice"] == pytest.approx(fg_dice)
    assert rep.mean["pixel_error"] == pytest.approx((r1.pixel_error + r2.pixel_error) / 2)


def test_ignore_index_class_excluded() -> None:
    truth = np.array([[0, 1, 1, 2], [0, 1, 2, 2]])
    pred = np.array([[1, 1, 1, 2], [1, 1, 2, 2]])
    r = evaluate_pair(pred, truth, num_classes=3, ignore_index=0)
    assert r.classes == (1, 2)
    assert r.pixel_error == 0.0
    np.testing.assert_allclose(r.dice[1:], [1.0, 1.0])
    rep = aggregate([r])
    assert rep.foreground == (1, 2)
    assert rep.mean["dice"] == 1.0
    assert rep.mean["hd95"] == 0.0


def test_rand_error_requires_boundary_class() -> None:
    pred, truth = _squares()
    with pytest.raises(ValueError, match="boundary_class"):
        evaluate_pair(pred, truth, num_classes=2, rand_error=True)
    r = evaluate_pair(truth, truth, num_classes=2, rand_error=True, boundary_class=1)
    assert r.rand_error == 0.0


def test_json_table_csv(tmp_path: Path) -> None:
    pred, truth = _squares()
    truth2 = truth.copy()
    truth2[0, 0] = 2
    rs = [
        evaluate_pair(pred, truth, num_classes=3, name="x", rand_error=True, boundary_class=1),
        evaluate_pair(pred, truth2, num_classes=3, name="y", rand_error=True, boundary_class=1),
    ]
    rep = aggregate(rs)
    d = rep.to_json_dict()
    assert set(d) == {"mean", "per_class", "per_image"}
    assert set(d["mean"]) == {"dice", "iou", "hd95", "pixel_error", "rand_error"}
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN/inf leak through
    assert d["per_image"][1]["per_class"]["2"]["hd95"] is None
    assert d["per_image"][1]["per_class"]["2"]["hd95_status"] == "pred_empty"
    assert d["per_image"][0]["per_class"]["2"]["hd95_status"] == "both_empty"
    assert d["per_class"]["2"]["hd95_penalised"] == 1
    assert d["mean"]["rand_error"] == pytest.approx((rs[0].rand_error + rs[1].rand_error) / 2)
    table = rep.format_table()
    assert "mean fg" in table and "rand_error" in table
    assert f"{rep.mean['dice']:.4f}" in table
    out = tmp_path / "m.csv"
    rep.to_csv(out)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 3
    assert float(rows[1]["dice"]) == pytest.approx(0.5)
    assert rows[5]["hd95"] == "inf"


def test_aggregate_bad_arguments() -> None:
    with pytest.raises(ValueError, match="results"):
        aggregate([])
    pred, truth = _squares()
    with pytest.raises(ValueError, match="results"):
        aggregate(
            [
                evaluate_pair(pred, truth, num_classes=2),
                evaluate_pair(pred, truth, num_classes=3),
            ]
        )
