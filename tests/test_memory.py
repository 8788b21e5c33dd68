"""The memory guard: estimates from the config alone, refusals that name the option to lower
and a value that fits (checked against the estimate itself), the available-memory override."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit import memory
from unetkit.errors import ModelFileError, UnetkitError
from unetkit.model import UNet, UNetConfig

SMALL = UNetConfig(widths=(8, 16, 32), out_channels=2)


def test_parse_bytes_and_env_override(monkeypatch) -> None:
    assert memory.parse_bytes("3G") == 3 * 2**30
    assert memory.parse_bytes("512MiB") == 512 * 2**20
    assert memory.parse_bytes("1000") == 1000
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(UnetkitError, match=memory.ENV):
            memory.parse_bytes(bad)
    monkeypatch.setenv(memory.ENV, "2G")
    assert memory.available_bytes() == (2 * 2**30, memory.ENV)


def test_measured_memory_is_positive(monkeypatch) -> None:
    monkeypatch.delenv(memory.ENV, raising=False)
    have, source = memory.available_bytes()
    assert have > 0 and source


def test_parameter_count_matches_the_built_model() -> None:
    assert memory.parameter_count(SMALL) == sum(p.numel() for p in UNet(SMALL).parameters())


def test_estimates_grow_with_batch_and_size() -> None:
    a = memory.train_step_estimate(SMALL, (64, 64), 2)
    b = memory.train_step_estimate(SMALL, (64, 64), 4)
    c = memory.train_step_estimate(SMALL, (128, 128), 2)
    assert a.weights == memory.parameter_count(SMALL) * 16
    assert a.total < b.total and a.total < c.total
    assert memory.predict_estimate(SMALL, (64, 64), 2).total < a.total


def test_train_refusal_names_the_largest_batch_size_that_fits() -> None:
    six = memory.train_step_estimate(SMALL, (256, 256), 6).total
    have = int(six / memory.USABLE) + 1  # batch 6 fits, 7 does not
    with pytest.raises(UnetkitError, match=r"--batch-size 16 .*; --batch-size 6 would fit$"):
        memory.check_train(SMALL, (256, 256), 16, available=have)
    assert memory.train_step_estimate(SMALL, (256, 256), 7).total > have * memory.USABLE
    memory.check_train(SMALL, (256, 256), 6, available=have)  # and it is accepted


def test_train_refusal_moves_to_patch_size_then_widths() -> None:
    one = memory.train_step_estimate(SMALL, (256, 256), 1)
    fixed = one.weights + one.overhead
    have = int((fixed + one.activations * 0.5) / memory.USABLE)
    with pytest.raises(UnetkitError, match=r"; --patch-size (\d+) \1 --batch-size \d+ would fit$"):
        memory.check_train(SMALL, (256, 256), 4, available=have)
    have = int((one.overhead + one.weights * 0.5) / memory.USABLE)
    with pytest.raises(UnetkitError, match=r"; model.widths=\[4,8,16\] with --patch-size"):
        memory.check_train(SMALL, (256, 256), 4, available=have)


def test_predict_refusal_names_tile_or_batch() -> None:
    two = memory.predict_estimate(SMALL, (512, 512), 2).total
    with pytest.raises(UnetkitError, match=r"; --batch-size 2 would fit$"):
        memory.check_predict(SMALL, (512, 512), 4, available=int(two / memory.USABLE) + 1)
    one = memory.predict_estimate(SMALL, (512, 512), 1)
    have = int((one.weights + one.overhead + one.activations * 0.5) / memory.USABLE)
    with pytest.raises(UnetkitError, match=r"; --tile 256 256 --batch-size 1 would fit$"):
        memory.check_predict(SMALL, (512, 512), 4, available=have)


def test_valid_padding_suggestions_are_valid_sizes() -> None:
    from unetkit.model import sizes

    cfg = UNetConfig(widths=(8, 16, 32), out_channels=2, padding="valid")
    smaller = memory._smaller_sizes(cfg, (572, 572))
    assert smaller and all(sizes.axis_is_valid(cfg, s[0]) for s in smaller)


def test_a_model_file_declaring_a_huge_model_is_refused_before_building(
    tmp_path: Path, monkeypatch
) -> None:
    import dataclasses
    import json

    from safetensors import safe_open

    from unetkit.modelfile import load, save, write_tensors

    path = save(UNet(UNetConfig(widths=(4, 8), norm="none")), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    huge = dataclasses.replace(UNetConfig(widths=(4, 8), norm="none"), widths=(4096,) * 6)
    meta["config"] = json.dumps(dataclasses.asdict(huge))
    meta.pop("sha256_metadata")
    write_tensors(tmp_path / "huge.safetensors", tensors, meta)
    assert (tmp_path / "huge.safetensors").stat().st_size < 10_000
    monkeypatch.setenv(memory.ENV, "4G")
    built = []
    monkeypatch.setattr("unetkit.modelfile.UNet", lambda *a, **k: built.append(1))
    with pytest.raises(ModelFileError, match=r"huge.safetensors: declares a model of [\d,]+ par"):
        load(tmp_path / "huge.safetensors")
    assert built == []  # refused before anything was built


def test_the_prediction_estimate_is_traced_once_per_config_tile_and_batch(monkeypatch) -> None:
    from unetkit.model import summary

    calls = []
    real = summary.summarize

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(summary, "summarize", counted)
    config = UNetConfig(widths=(4, 8), in_channels=1, out_channels=7)  # not used elsewhere
    first = memory.predict_estimate(config, (48, 48), 3)
    assert memory.predict_estimate(config, [48, 48], 3) == first and len(calls) == 1
    bigger = memory.predict_estimate(config, (96, 96), 3)  # another tile: traced again
    assert len(calls) == 2 and bigger.activations > first.activations
    wider = UNetConfig(widths=(8, 16), in_channels=1, out_channels=7)
    assert memory.predict_estimate(wider, (48, 48), 3).weights > first.weights
    assert len(calls) == 3
