"""``unetkit predict`` writes only into folders it owns and replaces only what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from unetkit.infer.output_folder import MANIFEST
from unetkit.io.images import write_image
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import save


def _setup(tmp: Path) -> None:
    for seed, name in ((0, "m0"), (1, "m1")):
        torch.manual_seed(seed)
        model = UNet(UNetConfig(widths=(4, 8), norm="none"))
        save(model.eval(), tmp / f"{name}.safetensors")
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        write_image(tmp / "in" / f"{stem}.png", rng.integers(0, 255, (1, 24, 24), dtype=np.uint8))


def _predict(cli, tmp: Path, model: str, *extra: str):
    return cli(
        "predict", "--model", model, "--input", "in", "--out", "out", "--no-progress", *extra,
        cwd=tmp,
    )  # fmt: skip


def test_overwrite_replaces_only_recorded_outputs(cli, tmp_path: Path) -> None:
    _setup(tmp_path)
    out = tmp_path / "out"
    first = _predict(cli, tmp_path, "m0.safetensors", "--save-probabilities")
    assert first.returncode == 0, first.stderr
    recorded = json.loads((out / MANIFEST).read_text())["outputs"]
    assert sorted(recorded) == ["a.png", "b.png", "probabilities/a.npy", "probabilities/b.npy"]

    # the user adds files of their own; another program leaves a temporary file; a killed
    # unetkit write leaves a temporary of a recorded output
    (out / "notes.txt").write_text("mine")
    (out / "probabilities" / "c.npy").write_bytes(b"mine too")
    (out / ".editor.swp.tmp").write_text("another program's")
    (out / ".a.png.k1ll3d00.tmp").write_bytes(b"half")
    mine = {p: p.read_bytes() for p in (out / "notes.txt", out / "probabilities" / "c.npy")}

    refused = _predict(cli, tmp_path, "m1.safetensors", "--save-probabilities")
    assert refused.returncode == 2
    assert "predicted with another model or other settings" in refused.stderr
    assert "use --overwrite" in refused.stderr

    again = _predict(cli, tmp_path, "m1.safetensors", "--save-probabilities", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "predicted 2, skipped 0" in again.stdout
    digests = set(json.loads((out / MANIFEST).read_text())["outputs"].values())
    assert len(digests) == 1 and digests != set(recorded.values())  # all now from m1
    for path, content in mine.items():
        assert path.read_bytes() == content  # the user's files are untouched
    assert (out / ".editor.swp.tmp").read_text() == "another program's"
    assert not (out / ".a.png.k1ll3d00.tmp").exists()  # unetkit's own stale temporary

    rerun = _predict(cli, tmp_path, "m1.safetensors", "--save-probabilities")
    assert rerun.returncode == 0 and "predicted 0, skipped 2" in rerun.stdout


def test_a_users_file_under_an_output_name_is_never_replaced(cli, tmp_path: Path) -> None:
    _setup(tmp_path)
    out = tmp_path / "out"
    assert _predict(cli, tmp_path, "m0.safetensors").returncode == 0
    (out / "b.png").unlink()
    (out / "B.PNG").write_bytes(b"the user's own B")  # same name up to case
    r = _predict(cli, tmp_path, "m0.safetensors", "--overwrite")
    assert r.returncode == 2
    assert "B.PNG: exists and was not written by unetkit predict" in r.stderr
    assert (out / "B.PNG").read_bytes() == b"the user's own B"
