"""Bad image and mask files through ``read_image``/``read_mask``: one clear line each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from catalogue import DOC, IMAGE_CASES, ApiCase, bomb_png, check_api_case, doc_row, png

from unetkit.errors import DataError
from unetkit.io.images import read_image


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_bad_file_gives_one_clear_error(case: ApiCase, tmp_path: Path) -> None:
    outcome = check_api_case(case, tmp_path)
    row = doc_row(case.name, outcome.result, outcome.message, tmp_path)
    assert row in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is stale for {case.name!r}; run tests/robustness/make_doc.py"
    )


def test_raising_the_pixel_limit_reads_a_large_image(tmp_path: Path, monkeypatch) -> None:
    path = png(tmp_path / "big.png", np.full((40, 50), 7, np.uint8))
    with pytest.raises(DataError, match="2000 pixels exceeds the limit of 1999"):
        read_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000).shape == (1, 40, 50)
    monkeypatch.setenv("UNETKIT_MAX_PIXELS", "1999")
    with pytest.raises(DataError, match="UNETKIT_MAX_PIXELS=2000"):
        read_image(path)
    monkeypatch.setenv("UNETKIT_MAX_PIXELS", "2000")
    assert float(read_image(path).mean()) == 7.0


def test_bomb_is_refused_from_the_header_without_decoding(tmp_path: Path, monkeypatch) -> None:
    import PIL.Image

    opened: list[str] = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append("x") or real_open(*a, **k))
    with pytest.raises(DataError, match="10000000000 pixels"):
        read_image(bomb_png(tmp_path / "bomb.png"))
    assert opened == []
