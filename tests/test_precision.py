"""The one precision/memory-format policy (unetkit.precision): training and inference choices,
auto by measurement (injected), autocast, channels_last; and the trainer following it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetkit import hardware
from unetkit import precision as speed
from unetkit.model import UNet, UNetConfig
from unetkit.precision import (
    Bf16Timing,
    autocast,
    inference_precision,
    to_channels_last,
    training_precision,
    use_channels_last,
)


@pytest.fixture(autouse=True)
def _bf16_may_be_chosen(allow_bf16: None) -> None:
    """These tests are about the automatic choice itself."""


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "bf16_is_faster", lambda device="cpu", *a: False)
    assert training_precision("auto") == "fp32"
    monkeypatch.setattr(speed, "bf16_is_faster", lambda device="cpu", *a: True)
    assert training_precision("auto") == "bf16"
    assert training_precision("fp32") == "fp32"


def _inject(monkeypatch: pytest.MonkeyPatch, fp32: float, bf16: float) -> list[str]:
    """Native bf16 and a measurement that says fp32 takes ``fp32`` s and bf16 ``bf16`` s."""
    calls: list[str] = []

    def fake(precision: str) -> float:
        calls.append(precision)
        return {"fp32": fp32, "bf16": bf16}[precision]

    monkeypatch.setattr(speed, "native_bf16", lambda device="cpu": True)
    monkeypatch.setattr(speed, "_MEASURED", {})
    monkeypatch.setattr(speed, "conv_measure", lambda device="cpu": fake)
    return calls


def test_auto_training_precision_follows_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _inject(monkeypatch, fp32=1.0, bf16=0.5)
    assert training_precision("auto") == "bf16"
    assert set(calls) == {"fp32", "bf16"}
    n = len(calls)
    assert training_precision("auto") == "bf16" and len(calls) == n  # cached: not timed again
    assert "2.0x faster" in speed.describe_choice("auto", "bf16")
    _inject(monkeypatch, fp32=1.0, bf16=0.5)
    slow_round = iter([1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0, 1.2])  # bf16 lost the last round

    def mixed(precision: str) -> float:
        return next(slow_round)

    monkeypatch.setattr(speed, "conv_measure", lambda device="cpu": mixed)
    assert training_precision("auto") == "fp32"
    _inject(monkeypatch, fp32=1.0, bf16=1.9)
    assert training_precision("auto") == "fp32"
    assert "1.9x slower" in speed.describe_choice("auto", "fp32")
    _inject(monkeypatch, fp32=1.0, bf16=0.95)  # within the noise margin: stay in fp32
    assert training_precision("auto") == "fp32"
    # a caller's own work is timed instead of the default convolution
    own = {"fp32": 0.2, "bf16": 0.1}
    assert training_precision("auto", measure=own.__getitem__, key="own") == "bf16"


def test_auto_without_native_bf16_is_fp32_and_times_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _inject(monkeypatch, fp32=1.0, bf16=0.1)
    monkeypatch.setattr(speed, "native_bf16", lambda device="cpu": False)
    assert training_precision("auto") == "fp32" and calls == []
    assert "no native bf16" in speed.describe_choice("auto", "fp32")


def test_time_both_alternates_and_judges_by_the_least_favourable_round() -> None:
    seen: list[str] = []
    times = iter([9.0, 9.0, 3.0, 1.5, 1.0, 4.0])

    def measure(precision: str) -> float:
        seen.append(precision)
        return next(times)

    timing = speed.time_both(measure, rounds=2)  # type: ignore[arg-type]
    assert seen == ["fp32", "bf16", "fp32", "bf16", "fp32", "bf16"]  # warm-up, then pairs
    assert timing == Bf16Timing(fp32_seconds=1.0, bf16_seconds=1.5, ratio=4.0)


def test_inference_auto_follows_the_instruction_set_without_timing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _inject(monkeypatch, fp32=1.0, bf16=0.1)
    monkeypatch.setattr(hardware, "bf16_is_faster", lambda device="cpu": False)
    assert inference_precision("auto") == "fp32" and calls == []
    monkeypatch.setattr(hardware, "bf16_is_faster", lambda device="cpu": True)
    assert inference_precision("auto") == "bf16"
    monkeypatch.setattr(speed, "native_bf16", lambda device="cpu": False)
    assert inference_precision("bf16") == "bf16"  # explicit: honoured (emulated, a warning)


def test_the_real_measurement_on_this_machine_is_cached_and_leaves_the_rng_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(speed, "native_bf16", lambda device="cpu": True)
    monkeypatch.setattr(speed, "_MEASURED", {})
    torch.manual_seed(123)
    state = torch.get_rng_state()
    timing = speed.bf16_timing("cpu")
    assert timing is not None and timing.fp32_seconds > 0 and timing.bf16_seconds > 0
    assert torch.equal(torch.get_rng_state(), state)
    assert speed.bf16_timing("cpu") is timing


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "_MEASURED", {})
    assert use_channels_last("auto", 2, "cuda") and use_channels_last("auto", 3, "cuda")
    chosen = training_precision("auto", "cuda")
    timing = speed.bf16_timing("cuda")
    if hardware.native_bf16("cuda"):
        assert timing is not None and chosen == ("bf16" if timing.ratio < 0.9 else "fp32")
    else:
        assert timing is None and chosen == "fp32"
    expected = "bf16" if hardware.native_bf16("cuda") else "fp32"
    assert inference_precision("auto", "cuda") == expected
    x, w = torch.randn(1, 2, 8, 8, device="cuda"), torch.randn(3, 2, 3, 3, device="cuda")
    with autocast("bf16", "cuda"):
        y = torch.nn.functional.conv2d(x, w)
    assert y.dtype == torch.bfloat16


def test_use_channels_last_strict_refuses_1d() -> None:
    assert not use_channels_last(True, 1)
    with pytest.raises(ValueError, match="channels_last: only 2D and 3D"):
        use_channels_last(True, 1, strict=True)
    assert speed.memory_format(2) == torch.channels_last
    assert speed.memory_format(3) == torch.channels_last_3d


@pytest.mark.parametrize(
    ("shape", "dims"), [((2, 1, 5, 7), 2), ((2, 3, 5, 7), 2), ((1, 1, 3, 4, 5), 3)]
)
def test_as_channels_last_gives_one_channel_maps_channels_last_strides(
    shape: tuple[int, ...], dims: int
) -> None:
    x = torch.randn(shape)
    y = speed.as_channels_last(x, dims)
    assert y.stride(1) == 1 and y.is_contiguous(memory_format=speed.memory_format(dims))
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    if dims == 2:  # a one-channel image in these strides: the convolution writes channels-last
        out = torch.nn.functional.conv2d(y, torch.randn(4, shape[1], 3, 3), padding=1)
        assert out.stride(1) == 1
