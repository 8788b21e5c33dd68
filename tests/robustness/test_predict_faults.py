"""``unetkit predict`` killed half-way, then rerun: the rest is finished, nothing half-written.

Outputs are written atomically, so a file under its final name is complete; the rerun skips
those and predicts the others, and the result equals an uninterrupted run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from catalogue import cli_env, image_array, png, run_in_process, small_model_file

from unetkit.io.images import read_mask

N_IMAGES = 8


def _inputs(folder: Path) -> Path:
    for i in range(N_IMAGES):
        png(folder / f"im{i:02d}.png", image_array((128, 128), seed=i))
    return folder


def _predict(tmp: Path, out: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unetkit",
            "predict",
            "--model",
            "model.safetensors",
            "--input",
            "in",
            "--out",
            out,
            "--no-progress",
        ],
        cwd=tmp,
        env=cli_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_predict_killed_then_rerun_finishes_the_rest(tmp_path: Path) -> None:
    small_model_file(tmp_path / "model.safetensors", widths=(16, 32, 64))
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    proc = _predict(tmp_path, "out")
    try:
        while proc.poll() is None and not any(out.glob("*.png")):
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    done_before = sorted(p.name for p in out.glob("*.png"))
    assert 0 < len(done_before) < N_IMAGES, "the kill did not land half-way"
    for name in done_before:  # every file under its final name is complete
        assert read_mask(out / name).shape == (128, 128)

    rerun = _predict(tmp_path, "out")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"skipped {len(done_before)}" in stdout and "Traceback" not in stderr
    assert f"predicted {N_IMAGES - len(done_before)}" in stdout

    args = ["predict", "--model", "model.safetensors", "--input", "in", "--out", "ref"]
    assert run_in_process(args, tmp_path, {}).returncode == 0  # an uninterrupted run
    for i in range(N_IMAGES):
        name = f"im{i:02d}.png"
        assert np.array_equal(read_mask(out / name), read_mask(tmp_path / "ref" / name)), name
