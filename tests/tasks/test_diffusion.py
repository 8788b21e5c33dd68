"""``task=diffusion`` through the one trainer: EMA saved, exact resume, generate, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.cli import main
from unetkit.config import DataConfig, RunConfig, TrainConfig, load_run_config
from unetkit.diffusion.options import DiffusionConfig
from unetkit.model import UNetConfig
from unetkit.modelfile import load_with_metadata, read_tensors, save
from unetkit.tasks.diffusion_data import apply_diffusion_recipe, prepare_diffusion
from unetkit.train.distributed import DistInfo
from unetkit.train.trainer import train


def image_folder(root: Path, n: int = 5, size: int = 20) -> Path:
    (root / "images").mkdir(parents=True)
    g = np.random.default_rng(0)
    for i in range(n):
        xx = np.mgrid[:size, :size][1]
        img = 100 + 50 * np.sin(xx / (2 + i)) + g.normal(0, 5, (size, size))
        np.save(root / "images" / f"im{i}.npy", img.astype(np.float32))
    return root


def tiny(folder: Path, **train: object) -> RunConfig:
    config = RunConfig(
        model=UNetConfig(widths=(4, 8), attention_levels=(1,)),
        data=DataConfig(path=str(folder), patch_size=(16, 16), val_fraction=0.4),
        train=dataclasses.replace(
            TrainConfig(epochs=3, steps_per_epoch=2, batch_size=2, deterministic=True,
                        channels_last=False, overlays=0),
            **train,
        ),
        task="diffusion",
        diffusion=DiffusionConfig(timesteps=50, ema_decay=0.9),
    )  # fmt: skip
    prepared = prepare_diffusion(config)
    config, _ = apply_diffusion_recipe(
        config, prepared, {"model.widths", "model.attention_levels", "data.patch_size",
                           "train.batch_size"},
    )  # fmt: skip
    return config


def run(config: RunConfig, out: Path, **kwargs: object):
    return train(config, prepare_diffusion(config), out, DistInfo(), quiet=True, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("diffusion")
    config = tiny(image_folder(root / "data"))
    run(config, root / "run")
    return root / "run"


def test_the_recipe_makes_a_time_conditioned_unconditional_denoiser(tmp_path: Path) -> None:
    config = tiny(image_folder(tmp_path))
    m = config.model
    assert m.time_conditioning and m.num_class_labels == 0
    assert m.in_channels == m.out_channels == 1 and m.norm == "group" and m.act == "silu"
    assert config.train.batch_size == 2 and config.model.widths == (4, 8)  # explicit kept


def test_the_model_file_holds_the_ema_weights_and_sampling_metadata(trained: Path) -> None:
    model, meta = load_with_metadata(trained)
    assert meta["task"] == "diffusion" and meta["diffusion"]["weights"] == "ema"
    assert meta["diffusion"]["timesteps"] == 50 and meta["diffusion"]["num_labels"] == 0
    low, high = meta["diffusion"]["scale"]
    assert 40 < low < high < 170  # the images' own units
    raw, _ = read_tensors(trained / "last" / "model.safetensors")
    ema = model.state_dict()
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)  # averaged, not the raw weights


def test_resume_is_exact_including_the_ema(tmp_path: Path) -> None:
    config = tiny(image_folder(tmp_path / "data"))
    run(config, tmp_path / "a")
    first, _ = run(config, tmp_path / "b", stop_after=1)
    assert first.stopped == "paused"
    run(load_run_config(tmp_path / "b" / "config.yaml"), tmp_path / "b", resume=True)
    for name in ("last/model.safetensors", "model.safetensors"):
        a, _ = read_tensors(tmp_path / "a" / name)
        b, _ = read_tensors(tmp_path / "b" / name)
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


def test_generate_writes_images_grid_and_is_seeded(trained: Path, tmp_path: Path) -> None:
    args = ["generate", "--model", str(trained), "--n", "3", "--steps", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [".unetkit-predict.json", "grid.png", "sample-0000.png", "sample-0001.png",
                     "sample-0002.png", "samples.json", "samples.npy"]  # fmt: skip
    a, b = np.load(tmp_path / "a" / "samples.npy"), np.load(tmp_path / "b" / "samples.npy")
    assert a.shape == (3, 1, 16, 16) and np.array_equal(a, b)
    _, meta = load_with_metadata(trained)
    low, high = meta["diffusion"]["scale"]
    assert a.min() >= low - 1e-3 and a.max() <= high + 1e-3  # in the data's units
    assert main([*args, "--seed", "1", "--out", str(tmp_path / "c")]) == 0
    assert not np.array_equal(a, np.load(tmp_path / "c" / "samples.npy"))
    assert json.loads((tmp_path / "a" / "samples.json").read_text())["labels"] is None
    # the raw weights of the last checkpoint differ from the EMA ones
    assert main([*args, "--weights", "raw", "--out", str(tmp_path / "d")]) == 0
    assert not np.array_equal(a, np.load(tmp_path / "d" / "samples.npy"))


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unetkit: error: ") and needle in err[0], err


def test_generate_refuses_bad_requests_in_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["generate", "--model", str(trained), "--n", "2", "--quiet"]
    _one_line_error(capsys, [*base, "--class", "1", "--out", str(tmp_path / "a")],
                    "the model is unconditional")  # fmt: skip
    _one_line_error(capsys, [*base, "--guidance", "3", "--out", str(tmp_path / "b")],
                    "--guidance 3.0: the model is unconditional")  # fmt: skip
    _one_line_error(capsys, [*base, "--n", "0", "--out", str(tmp_path / "c")], "--n 0")
    seg = tmp_path / "seg.safetensors"
    torch.manual_seed(0)
    from unetkit.model import UNet

    save(UNet(UNetConfig(widths=(4, 8))), seg)
    _one_line_error(capsys, ["generate", "--model", str(seg), "--out", str(tmp_path / "d")],
                    "is a segment model, not a diffusion model")  # fmt: skip
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    _one_line_error(capsys, [*base, "--out", str(tmp_path / "mine")], "did not write")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_class_checks_of_a_conditional_model(trained: Path) -> None:
    from unetkit.diffusion.generate import check_request, load_denoiser
    from unetkit.errors import UnetkitError

    d = load_denoiser(trained)
    d.info["num_labels"] = 10  # as a class-conditional model's file says
    check_request(d, 9, 2.0)
    with pytest.raises(UnetkitError, match=r"--class 10: out of range; .* 0\.\.9"):
        check_request(d, 10, 1.0)


def test_diffusion_data_problems_are_one_line(tmp_path: Path) -> None:
    from unetkit.errors import DataError

    (tmp_path / "images").mkdir()
    np.save(tmp_path / "images" / "a.npy", np.zeros((8, 8), np.float32))
    config = RunConfig(data=DataConfig(path=str(tmp_path)), task="diffusion")
    with pytest.raises(DataError, match="at least 2 images"):
        prepare_diffusion(config)
    np.save(tmp_path / "images" / "b.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(DataError, match="constant"):
        prepare_diffusion(config)


def test_digits_are_scaled_split_and_labelled() -> None:
    pytest.importorskip("sklearn")
    from unetkit.tasks.diffusion_data import digits_split, load_digits

    images, labels = load_digits(16)
    assert images.shape == (1797, 1, 16, 16) and images.dtype == np.float32
    assert images.min() == -1.0 and images.max() <= 1.0 and set(labels) == set(range(10))
    train, held = digits_split(len(images))
    assert len(train) == 1438 and len(held) == 359 and not set(train) & set(held)
    config = RunConfig(task="diffusion", data=DataConfig(path="digits"))
    prepared = prepare_diffusion(config)
    assert prepared.num_labels == 10 and len(prepared.train) == 1438
    config, _ = apply_diffusion_recipe(config, prepared, set())
    assert config.model.num_class_labels == 10 and config.data.patch_size == (16, 16)
    assert config.data.augment.p_flip == 0.0
