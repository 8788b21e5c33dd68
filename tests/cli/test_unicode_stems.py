"""File stems pair after Unicode NFC normalisation: names copied between systems still match.

macOS writes "é" as "e" + a combining accent (NFD); Linux and Windows keep what they are given
(usually the single code point, NFC). A dataset assembled from both must still pair up.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

from unetkit.io.images import write_image, write_mask

NFC = unicodedata.normalize("NFC", "caf\u00e9")
NFD = unicodedata.normalize("NFD", "caf\u00e9")


def _mask() -> np.ndarray:
    m = np.zeros((16, 16), np.uint8)
    m[3:9, 4:10] = 1
    return m


def test_check_data_pairs_an_nfc_image_with_an_nfd_mask(cli, tmp_path: Path) -> None:
    assert NFC != NFD
    write_image(tmp_path / "ds" / "images" / f"{NFC}.png", np.full((1, 16, 16), 90, np.uint8))
    write_mask(tmp_path / "ds" / "masks" / f"{NFD}.png", _mask())
    r = cli("check-data", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 pairs" not in r.stdout and ": 1 pairs" in r.stdout, r.stdout


def test_evaluate_pairs_an_nfd_prediction_with_an_nfc_truth(cli, tmp_path: Path) -> None:
    write_mask(tmp_path / "truth" / f"{NFC}.png", _mask())
    write_mask(tmp_path / "pred" / f"{NFD}.png", _mask())
    r = cli("evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"))
    assert r.returncode == 0, r.stderr
    assert "images      1" in r.stdout
    assert "1.0000" in r.stdout  # identical masks: Dice 1
