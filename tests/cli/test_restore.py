"""``unetkit train task=restore`` -> ``predict`` -> ``evaluate`` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

from unetkit.data.synthetic_restore import make_synthetic_restore

TINY = [
    "task=restore",
    "model.widths=[4,8]",
    "data.synthetic_count=4",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
]


def test_restore_runs_end_to_end_with_no_data(cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = cli("train", "--out", str(run), "--epochs", "1", *TINY)
    assert r.returncode == 0, r.stderr
    assert "val_psnr" in r.stdout and "best val_psnr" in r.stdout
    data = tmp_path / "ds"
    (data / "images").mkdir(parents=True)
    (data / "targets").mkdir()
    for s in make_synthetic_restore(2, size=40, seed=5):
        tifffile.imwrite(data / "images" / f"{s.stem}.tif", np.round(s.image[0]).astype(np.int16))
        tifffile.imwrite(data / "targets" / f"{s.stem}.tif", s.target[0])
    out = tmp_path / "restored"
    r = cli("predict", "--model", str(run), "--input", str(data), "--out", str(out))
    assert r.returncode == 0, r.stderr
    restored = tifffile.imread(out / "synthetic_0000.tif")
    assert restored.dtype == np.float32 and restored.shape == (40, 40)
    assert 0 < restored.mean() < 200  # counts, not normalised units
    # restoration averages over the 8 symmetries unless --tta off
    for mode in ("on", "off"):
        r = cli("predict", "--model", str(run), "--input", str(data), "--out",
                str(tmp_path / mode), "--tta", mode)  # fmt: skip
        assert r.returncode == 0, r.stderr
    assert np.array_equal(restored, tifffile.imread(tmp_path / "on" / "synthetic_0000.tif"))
    assert not np.array_equal(restored, tifffile.imread(tmp_path / "off" / "synthetic_0000.tif"))
    report = tmp_path / "eval.json"
    r = cli("evaluate", "--model", str(run), "--data", str(data), "--json", str(report))
    assert r.returncode == 0, r.stderr
    assert "data range: each target's max - min" in r.stdout
    scores = json.loads(report.read_text())
    assert scores["task"] == "restore" and len(scores["per_image"]) == 2
    assert np.isfinite(scores["mean"]["psnr"]) and "input_psnr" in scores["mean"]
