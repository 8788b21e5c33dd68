"""DDP through torchrun on CPU (gloo): rank 0 writes, resume works, and 2 processes with batch
B (batch norm synchronised across them) reach the weights of 1 process with batch 2B."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from unetkit.modelfile import read_tensors

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "model.widths=[4,8]",
    "model.norm=batch",
    "train.sync_batchnorm=true",
    # SGD, not Adam: Adam turns float noise in gradients that are ~0 in exact arithmetic (a bias
    # right before batch norm) into full-size steps, which hides the comparison
    "train.optimizer=sgd",
    "train.lr=0.05",
    "data.synthetic_count=6",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=3",
    "train.channels_last=false",
    "train.overlays=0",
    "--epochs",
    "2",
    "--deterministic",
    "--quiet",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _unetkit(*args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, "-m", "unetkit", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "unetkit",
            *args,
        ]
    return subprocess.run(
        cmd, env=_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def test_two_processes_match_one_and_resume(tmp_path: Path) -> None:
    single = _unetkit("train", "--out", str(tmp_path / "one"), "--batch-size", "2", *TINY)
    assert single.returncode == 0, single.stderr
    ddp_args = ["train", "--out", str(tmp_path / "two"), "--batch-size", "1", *TINY]
    first = _unetkit(*ddp_args, "--stop-after", "1", nproc=2)
    assert first.returncode == 0, first.stderr[-3000:]
    # one checkpoint, written by rank 0 alone (no stray temporary folders from rank 1)
    two = tmp_path / "two"
    assert (two / "last" / "state.safetensors").is_file()
    assert not [p for p in two.iterdir() if p.name.endswith(".tmp")]
    assert len((two / "metrics.csv").read_text().splitlines()) == 2
    second = _unetkit("train", "--resume", str(two), "--quiet", nproc=2)
    assert second.returncode == 0, second.stderr[-3000:]
    a, _ = read_tensors(tmp_path / "one" / "last" / "model.safetensors")
    b, _ = read_tensors(two / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
    assert len((two / "metrics.csv").read_text().splitlines()) == 3
