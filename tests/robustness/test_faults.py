"""Faults while writing model files: a kill mid-write or a full disk never loses the previous file.

The trainer's checkpoints go through the same ``modelfile.write_tensors`` → ``atomic_write``
path, so these are the checkpoint guarantees at the level that exists today.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from catalogue import cli_env

from unetkit.errors import UnetkitError
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import load, save

# Saves two different models to one path, alternately, for ever; prints after the first save.
WRITER = """
import sys, torch
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import save
models = []
for seed in (0, 1):
    torch.manual_seed(seed)
    models.append(UNet(UNetConfig(widths=(32, 64, 128, 256), norm="none")))
i = 0
while True:
    save(models[i % 2], sys.argv[1], metadata={"seed": i % 2})
    if i == 0:
        print("saved", flush=True)
        if sys.argv[2:] == ["block"]:  # stop inside the next write, before its fsync + rename
            import time
            import unetkit.io.atomic as atomic

            def stalled_fsync(fd):
                print("writing", flush=True)
                time.sleep(120)

            atomic.os.fsync = stalled_fsync
    i += 1
"""


def _model(seed: int) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(widths=(32, 64, 128, 256), norm="none"))


def test_sigkill_during_saves_always_leaves_a_complete_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    expected = {seed: _model(seed).state_dict() for seed in (0, 1)}
    rng = random.Random(7)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            env=cli_env({}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "saved"
            time.sleep(rng.uniform(0.0, 0.5))  # a random moment, most likely mid-write
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        from unetkit.modelfile import load_with_metadata

        model, extra = load_with_metadata(path)  # complete and checksum-valid
        state = model.state_dict()
        reference = expected[extra["seed"]]
        assert all(torch.equal(state[k], reference[k]) for k in reference)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.safetensors"]
    assert all(name.startswith(".model.safetensors.") for name in leftovers), leftovers


def test_sigkill_inside_a_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "block"],
        env=cli_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "saved"
        assert proc.stdout.readline().strip() == "writing"  # the new file is in its temp file
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    from unetkit.modelfile import load_with_metadata

    model, extra = load_with_metadata(path)
    assert extra == {"seed": 0}  # the previous, complete file
    reference = _model(0).state_dict()
    assert all(torch.equal(model.state_dict()[k], reference[k]) for k in reference)
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1 and temps[0].name.startswith(".model.safetensors.")


def test_full_disk_while_saving_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.safetensors"
    old = UNet(UNetConfig(widths=(4, 8), norm="none"))
    save(old, path)
    before = path.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("unetkit.io.atomic.os.fsync", no_space)
    with pytest.raises(UnetkitError, match=rf"no space left on device while writing {path}"):
        save(UNet(UNetConfig(widths=(4, 8), norm="none", out_channels=3)), path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]  # temporary file removed
    assert path.read_bytes() == before
    assert load(path).config.out_channels == 2


def test_other_write_errors_are_not_swallowed(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.safetensors"
    save(UNet(UNetConfig(widths=(4, 8), norm="none")), path)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("unetkit.io.atomic.os.fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        save(UNet(UNetConfig(widths=(4, 8), norm="none")), path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    load(path)
