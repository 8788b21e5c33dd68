"""Tests for the hardware probe: the bf16 decision and its fallbacks."""

from __future__ import annotations

import pytest

from unetkit import hardware


def test_features_are_lower_case_names() -> None:
    features = hardware.cpu_features()
    assert isinstance(features, frozenset)
    assert all(f == f.lower() for f in features)


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
