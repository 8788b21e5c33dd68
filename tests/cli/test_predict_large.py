"""``unetkit predict`` on images larger than memory (Zarr in, Zarr out; TIFF with --blockwise),
and under ``torchrun``: two processes give the same outputs as one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.io.images import read_mask, write_image
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import save

zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")
REPO = Path(__file__).resolve().parents[2]


def _setup(tmp: Path) -> np.ndarray:
    torch.manual_seed(3)
    save(UNet(UNetConfig(widths=(4, 8), out_channels=3)).eval(), tmp / "m.safetensors")
    rng = np.random.default_rng(0)
    big = (np.cumsum(rng.normal(size=(90, 100)), axis=1) * 8 + 120).clip(0, 255).astype(np.uint8)
    z = zarr.open_array(str(tmp / "big.zarr"), mode="w", shape=big.shape, chunks=(32, 32),
                        dtype=np.uint8)
    z[...] = big
    (tmp / "ref").mkdir()
    write_image(tmp / "ref" / "big.png", big[None])
    tifffile.imwrite(tmp / "ref" / "big.tif", big, tile=(32, 32))
    for i in range(3):
        write_image(tmp / "small" / f"s{i}.png", rng.integers(0, 255, (1, 24, 40), np.uint8))
    return big


def _store_labels(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(path), mode="r")["labels/prediction/0"][...])


def _predict(cli, tmp: Path, out: str, *inputs: str, extra: tuple[str, ...] = ()):
    result = cli("predict", "--model", "m.safetensors", "--input", *inputs, "--out", out,
                 "--tile", "32", "--no-progress", "--block", "32", *extra, cwd=tmp)
    assert result.returncode == 0, result.stderr
    return result


def test_zarr_and_blockwise_tiff_equal_the_in_memory_prediction(cli, tmp_path: Path) -> None:
    _setup(tmp_path)
    _predict(cli, tmp_path, "mem", "ref/big.png")
    _predict(cli, tmp_path, "zarr", "big.zarr", extra=("--save-probabilities",))
    _predict(cli, tmp_path, "tif", "ref/big.tif", extra=("--blockwise",))
    expected = read_mask(tmp_path / "mem" / "big.png")
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(_store_labels(tmp_path / "zarr" / "big.zarr"), expected)
    np.testing.assert_array_equal(_store_labels(tmp_path / "tif" / "big.zarr"), expected)
    probs = zarr.open_group(str(tmp_path / "zarr" / "big.zarr"), mode="r")["probabilities"]
    assert probs.shape == (3, 90, 100)
    again = _predict(cli, tmp_path, "zarr", "big.zarr", extra=("--save-probabilities",))
    assert "predicted 0, skipped 1" in again.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_processes_equal_one(cli, tmp_path: Path) -> None:
    _setup(tmp_path)
    _predict(cli, tmp_path, "one", "big.zarr", "small")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         "-m", "unetkit", "predict", "--model", "m.safetensors", "--input", "big.zarr", "small",
         "--out", "two", "--tile", "32", "--block", "32", "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "predicted 4, skipped 0" in run.stdout
    np.testing.assert_array_equal(
        _store_labels(tmp_path / "two" / "big.zarr"), _store_labels(tmp_path / "one" / "big.zarr")
    )
    for i in range(3):
        a = read_mask(tmp_path / "one" / f"s{i}.png")
        np.testing.assert_array_equal(read_mask(tmp_path / "two" / f"s{i}.png"), a)
    manifest = (tmp_path / "two" / ".unetkit-predict.json").read_text()
    assert all(name in manifest for name in ("big.zarr", "s0.png", "s1.png", "s2.png"))


def test_torchrun_at_the_target_spacing_equals_one_process_and_memory(cli, tmp_path: Path) -> None:
    _setup(tmp_path)
    torch.manual_seed(4)
    model = UNet(UNetConfig(widths=(4, 8), out_channels=3)).eval()
    save(model, tmp_path / "ts.safetensors", metadata={"target_spacing": [1.0, 1.0]})
    args = ("--model", "ts.safetensors", "--tile", "32", "--block", "32", "--spacing", "2", "1",
            "--no-progress")  # fmt: skip
    for out, source in (("one", "big.zarr"), ("mem", "ref/big.png")):
        done = cli("predict", *args, "--input", source, "--out", out, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         "-m", "unetkit", "predict", *args, "--input", "big.zarr", "--out", "two"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    one = _store_labels(tmp_path / "one" / "big.zarr")
    assert one.shape == (90, 100)  # on the input's grid, predicted at 180 x 100
    np.testing.assert_array_equal(_store_labels(tmp_path / "two" / "big.zarr"), one)
    np.testing.assert_array_equal(one, read_mask(tmp_path / "mem" / "big.png"))
    assert not (tmp_path / "two" / "big.zarr" / "scratch").exists()
