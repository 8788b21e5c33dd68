"""``unetkit.fit`` from Python is the same run as ``unetkit train``: same config.yaml, same
files, same weights (deterministic), int8-calibrated model; and its own Python conveniences."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import unetkit
import unetkit.train
from unetkit.config import DataConfig, RunConfig, TrainConfig, load_run_config
from unetkit.model import UNetConfig
from unetkit.modelfile import load_with_metadata, read_tensors
from unetkit.workflow import fit, resolve_config

TINY = [
    "model.widths=[4,8]",
    "data.synthetic_count=6",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.threads=1",
]


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def test_fit_from_python_makes_the_same_run_as_the_cli(cli, tmp_path: Path) -> None:
    r = cli("train", "--out", str(tmp_path / "cli"), "--epochs", "2", "--deterministic", *TINY)
    assert r.returncode == 0, r.stderr
    config = RunConfig(
        model=UNetConfig(widths=(4, 8)),
        data=DataConfig(synthetic_count=6, synthetic_size=32, patch_size=(32, 32)),
        train=TrainConfig(
            epochs=2, deterministic=True, steps_per_epoch=2, batch_size=2, threads=1
        ),
    )
    said: list[str] = []
    result = fit(config, tmp_path / "py", echo=said.append)
    assert result.stopped == "finished" and result.steps == 4
    cli_run, py_run = tmp_path / "cli", tmp_path / "py"
    assert (py_run / "config.yaml").read_text() == (cli_run / "config.yaml").read_text()
    assert _files(py_run) == _files(cli_run)
    a, _ = read_tensors(cli_run / "last" / "model.safetensors")
    b, _ = read_tensors(py_run / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _, meta = load_with_metadata(py_run / "model.safetensors")
    assert "int8" in meta or any(line.startswith("int8: not calibrated") for line in said)
    printed = [line for line in r.stdout.splitlines() if line.startswith(("recipe: ", "data: "))]
    assert printed and all(line in said for line in printed)


def test_fit_is_public_from_unetkit_and_unetkit_train() -> None:
    assert unetkit.fit is fit
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        unetkit.train.nope  # noqa: B018


def test_resolve_config_counts_what_the_caller_set(tmp_path: Path) -> None:
    requested = RunConfig(train=TrainConfig(lr=0.01))
    config, explicit = resolve_config(requested, ["data.ignore_index=0"])
    assert config.train.lr == 0.01 and config.data.ignore_index == 0
    assert explicit == {"train.lr", "data.ignore_index"}
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("train:\n  epochs: 3\n")
    config, explicit = resolve_config(yaml_file)
    assert config.train.epochs == 3 and explicit == {"train.epochs"}
    assert resolve_config(None) == (RunConfig(), set())


def test_fit_resume_continues_a_paused_run(tmp_path: Path) -> None:
    overrides = [t for t in TINY if not t.startswith("train.threads")]
    first = fit(None, tmp_path, overrides=[*overrides, "train.epochs=2"], stop_after=1, quiet=True)
    assert first.stopped == "paused" and first.steps == 2
    assert "int8" not in load_with_metadata(tmp_path / "model.safetensors")[1]  # paused: later
    again = fit(out=tmp_path, resume=True, quiet=True)
    assert again.stopped == "finished" and again.steps == 4
    assert load_run_config(tmp_path / "config.yaml").train.epochs == 2
