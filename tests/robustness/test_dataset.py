"""Bad datasets through ``check_dataset``/``load_dataset``: every problem named, one line each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from catalogue import DATASET_CASES, DOC, ApiCase, check_api_case, dataset, doc_row, png

from unetkit.data.dataset import check_dataset, load_dataset


@pytest.mark.parametrize("case", DATASET_CASES, ids=lambda c: c.name)
def test_bad_dataset_is_reported_clearly(case: ApiCase, tmp_path: Path) -> None:
    outcome = check_api_case(case, tmp_path)
    row = doc_row(case.name, outcome.result, outcome.message, tmp_path)
    assert row in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is stale for {case.name!r}; run tests/robustness/make_doc.py"
    )


def test_255_as_ignore_label_is_not_mistaken_for_jpeg(tmp_path: Path) -> None:
    root = dataset(tmp_path / "ds")
    mask = np.zeros((16, 16), np.uint8)
    mask[2:8, 2:8] = 1
    mask[10:12, :] = 255  # the common "ignore" label
    png(root / "masks" / "s1.png", mask)
    report = check_dataset(root)
    assert report.ok, report.problems
    assert not any("JPEG" in p for p in report.problems + report.warnings)


def test_labels_that_fit_num_classes_are_not_called_lossy(tmp_path: Path) -> None:
    root = dataset(tmp_path / "ds")
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255
    mask[1, :8] = 250
    mask[0, 0] = 140
    png(root / "masks" / "s1.png", mask)
    assert check_dataset(root, num_classes=256).ok
    assert not check_dataset(root).ok


def test_bad_pixel_limit_env_is_one_error_not_one_per_file(tmp_path: Path, monkeypatch) -> None:
    from unetkit.errors import DataError

    root = dataset(tmp_path / "ds", n=3)
    monkeypatch.setenv("UNETKIT_MAX_PIXELS", "-5")
    with pytest.raises(DataError, match="UNETKIT_MAX_PIXELS='-5' is not a positive integer"):
        check_dataset(root)
    with pytest.raises(DataError, match="UNETKIT_MAX_PIXELS"):
        load_dataset(root)


def test_every_problem_is_collected_not_just_the_first(tmp_path: Path) -> None:
    root = dataset(tmp_path / "ds", n=4)
    (root / "masks" / "s0.png").unlink()
    png(root / "masks" / "s1.png", np.zeros((16, 9), np.uint8))
    (root / "images" / "s2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    problems = check_dataset(root).problems
    for stem in ("s0", "s1", "s2"):
        assert sum(f"{stem}.png" in p for p in problems) == 1, problems
    assert not any("s3" in p for p in problems)
