"""check_dataset finds every problem and names the file; load_dataset loads clean data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.data.dataset import check_dataset, find_pairs, load_dataset
from unetkit.errors import DataError

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _dataset(root: Path, n: int = 3, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        _write(root / "images" / f"s{i}.png", rng.integers(0, 256, (size, size), dtype=np.uint8))
        mask = np.zeros((size, size), np.uint8)
        mask[2:8, 3:9] = 1
        _write(root / "masks" / f"s{i}.png", mask)
    return root


def test_clean_dataset(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    report = check_dataset(root)
    assert report.ok and len(report.pairs) == 3
    assert report.num_classes == 2
    assert report.sizes["s0"] == (16, 16) and report.channels["s0"] == 1
    assert report.class_frequencies[1] == pytest.approx(36 / 256)
    assert [p.stem for p in find_pairs(root)] == ["s0", "s1", "s2"]
    samples = load_dataset(root)
    assert [s.stem for s in samples] == ["s0", "s1", "s2"]
    assert samples[0].image.dtype == np.float32 and samples[0].mask.dtype == np.int64


def test_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "d" / "images").mkdir(parents=True)
    report = check_dataset(tmp_path / "d")
    assert not report.ok and "masks/" in report.problems[0]
    with pytest.raises(DataError, match="missing folder"):
        find_pairs(tmp_path / "d")


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    problems = check_dataset(tmp_path).problems
    assert any("no images" in p for p in problems) and any("no masks" in p for p in problems)


def test_unpaired_files_named(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    (root / "masks" / "s1.png").unlink()
    _write(root / "masks" / "orphan.png", np.zeros((16, 16), np.uint8))
    problems = check_dataset(root).problems
    assert any("images/s1.png" in p and "no mask" in p for p in problems)
    assert any("masks/orphan.png" in p and "no image" in p for p in problems)


def test_size_mismatch_named(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    _write(root / "masks" / "s2.png", np.zeros((16, 15), np.uint8))
    (problem,) = check_dataset(root).problems
    assert "masks/s2.png" in problem and "16x15" in problem and "16x16" in problem


def test_differing_channel_counts(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    _write(root / "images" / "s0.png", np.zeros((16, 16, 3), np.uint8))
    (problem,) = check_dataset(root).problems
    assert "channel counts" in problem and "images/s0.png" in problem


def test_labels_outside_num_classes_named(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    mask = np.zeros((16, 16), np.uint8)
    mask[0, :3] = [1, 5, 7]
    _write(root / "masks" / "s1.png", mask)
    (problem,) = check_dataset(root, num_classes=3).problems
    assert "masks/s1.png" in problem and "5, 7" in problem
    assert check_dataset(root).num_classes == 8


def test_0_255_masks_are_mapped_with_a_note(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    for i in range(3):
        mask = np.zeros((16, 16), np.uint8)
        mask[4:10, 4:10] = 255
        _write(root / "masks" / f"s{i}.png", mask)
    report = check_dataset(root)
    assert report.ok and report.num_classes == 2
    assert len(report.notes) == 1 and "0/255" in report.notes[0]
    samples = load_dataset(root)
    assert set(np.unique(samples[0].mask)) == {0, 1} and samples[0].mask.sum() == 36


def test_antialiased_mask_detected(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 4:10] = 255
    mask[3, 4:10] = [12, 80, 128, 200, 240, 33]
    _write(root / "masks" / "s0.png", mask)
    (problem,) = check_dataset(root).problems
    assert "masks/s0.png" in problem and "anti-aliased" in problem


def test_intensity_image_as_mask_detected(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    _write(root / "masks" / "s0.png", np.arange(256, dtype=np.uint8).reshape(16, 16))
    (problem,) = check_dataset(root).problems
    assert "masks/s0.png" in problem and "256 distinct values" in problem


def test_unreadable_and_nan_files_named(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    (root / "images" / "s0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    bad = np.zeros((16, 16), np.float32)
    bad[3, 3] = np.nan
    (root / "images" / "s1.png").unlink()
    np.save(root / "images" / "s1.npy", bad)
    problems = check_dataset(root).problems
    assert len(problems) == 2
    assert any("images/s0.png" in p for p in problems)
    assert any("images/s1.npy" in p and "NaN" in p for p in problems)


def test_all_background_is_a_warning(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    for i in range(3):
        _write(root / "masks" / f"s{i}.png", np.zeros((16, 16), np.uint8))
    report = check_dataset(root)
    assert report.ok and any("background" in w for w in report.warnings)


def test_all_problems_collected_and_load_summarises(tmp_path: Path) -> None:
    root = _dataset(tmp_path, n=5)
    for i in range(5):
        _write(root / "masks" / f"s{i}.png", np.zeros((15, 16), np.uint8))
    report = check_dataset(root)
    assert len(report.problems) == 5
    assert "5 problem(s)" in report.format()
    with pytest.raises(DataError) as info:
        load_dataset(root)
    message = str(info.value)
    assert "5 problem(s)" in message and "(and 2 more)" in message and "\n" not in message


def test_instances_loaded_and_checked(tmp_path: Path) -> None:
    root = _dataset(tmp_path, n=2)
    inst = np.zeros((16, 16), np.uint16)
    inst[2:8, 3:9] = 300
    _write(root / "instances" / "s0.png", inst)
    _write(root / "instances" / "s1.png", np.zeros((4, 4), np.uint16))
    report = check_dataset(root)
    assert len(report.problems) == 1 and "instances/s1.png" in report.problems[0]
    _write(root / "instances" / "s1.png", inst)
    samples = load_dataset(root)
    assert samples[0].instances is not None and samples[0].instances.max() == 300


def test_format_and_to_dict(tmp_path: Path) -> None:
    report = check_dataset(_dataset(tmp_path))
    text = report.format()
    assert "3 pairs" in text and "16x16 (3)" in text and text.endswith("OK")
    data = report.to_dict()
    assert data["ok"] is True and data["num_classes"] == 2 and data["pairs"] == 3


@pytest.mark.skipif(not (DATA / "isbi2012-em").is_dir(), reason="shared data absent")
def test_real_isbi_dataset_is_clean() -> None:
    report = check_dataset(DATA / "isbi2012-em")
    assert report.ok and len(report.pairs) == 24 and report.num_classes == 2
    assert set(report.sizes.values()) == {(512, 512)}
    assert 0.1 < report.class_frequencies[1] < 0.5
