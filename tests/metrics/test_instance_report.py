"""The instance report's table, JSON and CSV carry the per-image and overall scores."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from unetkit.metrics import instance_report

# image a: truth 1 found exactly, truth 2 missed -> DSB 1/2 at every threshold
TRUTH_A = np.array([1, 1, 0, 2, 2])
PRED_A = np.array([3, 3, 0, 0, 0])
# image b: nothing to find, one false positive -> DSB 0, SEG undefined
TRUTH_B = np.zeros(5, dtype=np.int64)
PRED_B = np.array([0, 0, 4, 4, 0])


def _report():  # type: ignore[no-untyped-def]
    return instance_report(["a", "b"], [PRED_A, PRED_B], [TRUTH_A, TRUTH_B])


def test_json() -> None:
    d = json.loads(json.dumps(_report().to_json_dict()))  # serialisable as is
    assert [r["name"] for r in d["per_image"]] == ["a", "b"]
    assert d["per_image"][0]["dsb"] == pytest.approx(0.5)
    assert d["per_image"][1]["seg"] is None  # NaN -> null
    assert d["per_image"][1]["fp"] == 1
    o = d["overall"]
    assert o["dsb"] == pytest.approx(0.25)  # (0.5 + 0) / 2
    # summed: TP 1, FP 1, FN 1 -> precision 1/2, recall 1/2
    assert (o["tp"], o["fp"], o["fn"]) == (1, 1, 1)
    assert o["precision"] == pytest.approx(0.5) and o["recall"] == pytest.approx(0.5)
    assert o["seg"] == pytest.approx(0.5)  # (1 + 0) over the two truth objects
    assert o["ap@0.95"] == pytest.approx(0.25)


def test_table() -> None:
    lines = _report().format_table().splitlines()
    assert lines[0].split()[:3] == ["image", "dsb", "f1"]
    row_b = next(line for line in lines if line.startswith("b "))
    assert "n/a" in row_b
    overall = next(line for line in lines if line.startswith("overall"))
    assert overall.split()[1] == "0.2500"
    assert "2 images" in lines[-1]


def test_csv() -> None:
    rows = list(csv.DictReader(io.StringIO(_report().csv_text())))
    assert [r["image"] for r in rows] == ["a", "b", "overall"]
    assert float(rows[0]["dsb"]) == pytest.approx(0.5)
    assert rows[1]["seg"] == ""
    assert float(rows[2]["dsb"]) == pytest.approx(0.25)
    assert "ap@0.50" in rows[0]


def test_bad_lengths() -> None:
    with pytest.raises(ValueError, match="same non-zero number"):
        instance_report(["a"], [PRED_A, PRED_B], [TRUTH_A, TRUTH_B])
    with pytest.raises(ValueError, match="same non-zero number"):
        instance_report([], [], [])
