"""``unetkit export`` replaces only an earlier export of its own, and only with --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import save


def _export(cli, tmp: Path, *extra: str):
    return cli(
        "export", "--model", "run", "--format", "torchscript", "--out", "m.pt",
        "--input-size", "16", *extra, cwd=tmp,
    )  # fmt: skip


def test_export_overwrites_only_its_own_export(cli, tmp_path: Path) -> None:
    torch.manual_seed(0)
    (tmp_path / "run").mkdir()
    save(UNet(UNetConfig(widths=(4, 8), norm="none")).eval(), tmp_path / "run/model.safetensors")
    first = _export(cli, tmp_path)
    assert first.returncode == 0, first.stderr
    settings = json.loads((tmp_path / "m.pt.json").read_text())
    assert len(settings["export_sha256"]) == 64

    again = _export(cli, tmp_path)
    assert again.returncode == 2
    assert "m.pt: holds an earlier unetkit export; use --overwrite" in again.stderr

    replaced = _export(cli, tmp_path, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr

    (tmp_path / "m.pt").write_bytes(b"the user edited it")  # no longer the recorded export
    changed = _export(cli, tmp_path, "--overwrite")
    assert changed.returncode == 2
    assert "is not an export written by unetkit (or was changed since)" in changed.stderr
    assert (tmp_path / "m.pt").read_bytes() == b"the user edited it"

    model = tmp_path / "run/model.safetensors"
    before = model.read_bytes()
    onto_input = cli(
        "export", "--model", "run", "--format", "onnx", "--out", "run/model.safetensors",
        "--overwrite", cwd=tmp_path,
    )  # fmt: skip
    assert onto_input.returncode == 2
    assert "run/model.safetensors: exists and is not an export written by unetkit" in (
        onto_input.stderr
    )
    assert model.read_bytes() == before
