"""The per-object table: hand-computed rows in 2D and 3D, CSV text, a writer that never replaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.errors import UnetkitError
from unetkit.instances import object_table, object_table_csv, write_object_table


def _labels() -> np.ndarray:
    lab = np.zeros((4, 6), dtype=np.uint16)
    lab[0:2, 0:3] = 1  # 6 px, rows 0-1, cols 0-2: centroid (0.5, 1.0)
    lab[2:4, 4:6] = 3  # 4 px, rows 2-3, cols 4-5: centroid (2.5, 4.5)
    return lab


def test_2d_rows_by_hand() -> None:
    lab = _labels()
    image = np.arange(24, dtype=np.float64).reshape(4, 6)  # value = 6 * row + col
    classes = np.zeros((4, 6), dtype=np.int64)
    classes[0:2, 0:3] = 2
    classes[0, 0] = 1  # a minority pixel: the object is still class 2
    classes[2:4, 4:6] = 1
    t = object_table(lab, image=image, class_map=classes)
    assert list(t) == [
        "id", "class", "area", "centroid_y", "centroid_x", "bbox_start_y", "bbox_start_x",
        "bbox_stop_y", "bbox_stop_x", "mean_intensity",
    ]  # fmt: skip
    assert t["id"].tolist() == [1, 3]
    assert t["class"].tolist() == [2, 1]
    assert t["area"].tolist() == [6, 4]
    assert t["centroid_y"].tolist() == [0.5, 2.5]
    assert t["centroid_x"].tolist() == [1.0, 4.5]
    assert t["bbox_start_y"].tolist() == [0, 2] and t["bbox_stop_y"].tolist() == [2, 4]
    assert t["bbox_start_x"].tolist() == [0, 4] and t["bbox_stop_x"].tolist() == [3, 6]
    # object 1: mean of 0,1,2,6,7,8 = 4; object 3: mean of 16,17,22,23 = 19.5
    assert t["mean_intensity"].tolist() == pytest.approx([4.0, 19.5])


def test_class_tie_goes_to_smaller_class_and_default_class() -> None:
    lab = np.array([[1, 1], [1, 1]])
    cm = np.array([[3, 3], [2, 2]])
    assert object_table(lab, class_map=cm)["class"].tolist() == [2]
    assert object_table(lab)["class"].tolist() == [1]


def test_3d_and_channels() -> None:
    lab = np.zeros((3, 4, 5), dtype=np.int64)
    lab[1:3, 0:2, 2:5] = 2  # 2 x 2 x 3 = 12 voxels
    image = np.stack([np.ones(lab.shape), np.full(lab.shape, 5.0)])
    t = object_table(lab, image=image)
    assert t["volume"].tolist() == [12]
    assert (t["centroid_z"][0], t["centroid_y"][0], t["centroid_x"][0]) == (1.5, 0.5, 3.0)
    assert (t["bbox_start_z"][0], t["bbox_stop_z"][0]) == (1, 3)
    assert t["mean_intensity_0"].tolist() == [1.0] and t["mean_intensity_1"].tolist() == [5.0]


def test_empty_labels() -> None:
    t = object_table(np.zeros((4, 4), dtype=np.int64), image=np.ones((4, 4)))
    assert all(len(v) == 0 for v in t.values())
    assert object_table_csv(t).count("\n") == 1


def test_csv_text() -> None:
    text = object_table_csv(object_table(_labels()))
    assert text.splitlines() == [
        "id,class,area,centroid_y,centroid_x,bbox_start_y,bbox_start_x,bbox_stop_y,bbox_stop_x",
        "1,1,6,0.5,1,0,0,2,3",
        "3,1,4,2.5,4.5,2,4,4,6",
    ]


def test_writer_never_replaces(tmp_path: Path) -> None:
    table = object_table(_labels())
    out = tmp_path / "a.csv"
    write_object_table(out, table)
    assert out.read_text() == object_table_csv(table)
    out.write_text("mine")
    with pytest.raises(UnetkitError, match="exists already"):
        write_object_table(out, table)
    assert out.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]  # no temporary left


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2D or 3D"):
        object_table(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="image must have the shape"):
        object_table(_labels(), image=np.ones((3, 3)))
    with pytest.raises(ValueError, match="class_map must have the shape"):
        object_table(_labels(), class_map=np.ones((3, 3), dtype=int))
