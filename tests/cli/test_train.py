"""``unetkit train`` through a subprocess: a tiny run, and every user error as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = [
    "model.widths=[4,8]",
    "data.synthetic_count=4",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
]


def test_tiny_run_writes_a_loadable_model(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = cli("train", "--out", str(out), "--epochs", "1", *TINY)
    assert r.returncode == 0, r.stderr
    assert "config:" in r.stdout and "global batch 2" in r.stdout
    from unetkit import load

    assert load(out).config.widths == (4, 8)
    again = cli("train", "--out", str(out), "--epochs", "1", *TINY)
    assert again.returncode == 2 and "already holds a run" in again.stderr


def _bad_dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "images" / "a.npy").write_bytes(b"not an array")
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
        (["train.lrr=0.1"], "train.lrr: unknown setting"),
        (["--epochs", "0"], "--epochs: expected a positive integer"),
        (["--max-minutes", "-1"], "--max-minutes"),
        (["--resume", "/nonexistent/run"], "--resume"),
        (["--config", "/nonexistent.yaml"], "--config"),
        (["--preset", "nope"], "preset: unknown name"),
    ],
)
def test_user_errors_are_one_line(cli, tmp_path: Path, args: list[str], message: str) -> None:
    r = cli("train", "--out", str(tmp_path / "run"), *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_broken_dataset_is_reported_before_training(cli, tmp_path: Path) -> None:
    data = _bad_dataset(tmp_path / "ds")
    r = cli("train", "--data", str(data), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "problem" in r.stderr and str(data) in r.stderr
    assert not (tmp_path / "run").exists()


def test_sigint_writes_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo / "src"), PYTHONUNBUFFERED="1")
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "unetkit", "train", "--out", str(out), "--epochs", "500", *TINY],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the first epoch to finish
            if line.startswith("epoch 1/"):
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and f"--resume {out}" in stdout
    assert (out / "last" / "state.safetensors").is_file()
