"""Tests for the training speed options: precision choice, autocast, channels_last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetkit import hardware
from unetkit.model import UNet, UNetConfig
from unetkit.train import speed
from unetkit.train.speed import autocast, to_channels_last, training_precision, use_channels_last


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "bf16_is_faster", lambda device="cpu": False)
    assert training_precision("auto") == "fp32"
    monkeypatch.setattr(speed, "bf16_is_faster", lambda device="cpu": True)
    assert training_precision("auto") == "bf16"
    assert training_precision("fp32") == "fp32"


def test_explicit_bf16_without_native_support_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "native_bf16", lambda device="cpu": False)
    with pytest.raises(ValueError, match="precision"):
        training_precision("bf16")


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        training_precision("fp16")
    with pytest.raises(ValueError, match="precision"):
        autocast("half")


def test_autocast_runs_convolutions_in_bf16_and_fp32_leaves_them_alone() -> None:
    conv = nn.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 8, 8)
    with autocast("fp32"):
        assert conv(x).dtype == torch.float32
    with autocast("bf16"):
        assert conv(x).dtype == torch.bfloat16
    assert conv.weight.dtype == torch.float32  # weights stay fp32


@pytest.mark.skipif(not hardware.native_bf16("cpu"), reason="no native bf16 on this CPU")
def test_bf16_training_step_gives_fp32_gradients_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(4, 8)))
    x, y = torch.randn(2, 1, 16, 16), torch.randint(0, 2, (2, 16, 16))
    grads = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad()
        with autocast(precision):
            logits = model(x)
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        grads[precision] = model.head.weight.grad.clone()
    assert grads["bf16"].dtype == torch.float32
    rel = (grads["bf16"] - grads["fp32"]).norm() / grads["fp32"].norm()
    assert rel < 0.05


def test_channels_last_for_models_and_batches() -> None:
    model = to_channels_last(UNet(UNetConfig(widths=(4, 8))), 2)
    conv = model.head
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    batch = to_channels_last(torch.randn(2, 3, 8, 8), 2)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    vol = to_channels_last(torch.randn(1, 2, 4, 4, 4), 3)
    assert vol.is_contiguous(memory_format=torch.channels_last_3d)
    signal = torch.randn(2, 1, 16)
    assert to_channels_last(signal, 1) is signal
    with pytest.raises(ValueError, match="batch"):
        to_channels_last(torch.randn(2, 8, 8), 2)


def test_use_channels_last_choices() -> None:
    assert use_channels_last("auto", 2) and use_channels_last("auto", 3)
    assert not use_channels_last("auto", 1)
    assert not use_channels_last(True, 1)
    assert not use_channels_last(False, 2)
    with pytest.raises(ValueError, match="channels_last"):
        use_channels_last("on", 2)  # type: ignore[arg-type]
