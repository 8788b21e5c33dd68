"""Tests for the hardware probe: the bf16 decision and its fallbacks."""

from __future__ import annotations

import pytest

from unetkit import hardware


def test_features_are_lower_case_names() -> None:
    features = hardware.cpu_features()
    assert isinstance(features, frozenset)
    assert all(f == f.lower() for f in features)


def test_the_environment_can_keep_automatic_choices_at_fp32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from unetkit.precision import inference_precision, training_precision

    monkeypatch.setattr(hardware, "cpu_features", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    timed: list[str] = []

    def measure(precision: str) -> float:
        timed.append(precision)
        return {"fp32": 1.0, "bf16": 0.1}[precision]

    monkeypatch.setenv(hardware.NO_BF16_ENV, "1")
    assert not hardware.bf16_is_faster("cpu") and inference_precision("auto") == "fp32"
    assert training_precision("auto", measure=measure, key="env-test") == "fp32" and not timed
    assert inference_precision("bf16") == "bf16"  # an explicit choice is still honoured
    monkeypatch.setenv(hardware.NO_BF16_ENV, "0")
    assert hardware.bf16_allowed() and hardware.bf16_is_faster("cpu")
    assert training_precision("auto", measure=measure, key="env-test") == "bf16"


@pytest.mark.usefixtures("allow_bf16")
def test_bf16_is_faster_needs_amx_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_features", lambda: frozenset({"avx512_bf16"}))
    assert hardware.native_bf16("cpu")
    assert not hardware.bf16_is_faster("cpu")
    monkeypatch.setattr(hardware, "cpu_features", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    assert hardware.bf16_is_faster("cpu")
    monkeypatch.setattr(hardware, "cpu_features", lambda: frozenset({"avx2"}))
    assert not hardware.native_bf16("cpu")
    assert not hardware.bf16_is_faster("cpu")


def test_other_devices_never_choose_bf16() -> None:
    assert not hardware.native_bf16("meta")
    assert not hardware.bf16_is_faster("meta")


def test_describe_names_the_decisions() -> None:
    info = hardware.describe()
    assert info["native_bf16"] == hardware.native_bf16("cpu")
    assert info["native_int8"] == hardware.native_int8()
