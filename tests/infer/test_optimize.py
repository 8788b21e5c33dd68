"""Tests for the optimised inference path: exact folding, formats, precision choice, agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests import model_cases
from unetkit import hardware
from unetkit.infer.optimize import (
    OptimizedModel,
    fast_model,
    fold_batch_norms,
    optimize_for_inference,
    resolve_channels_last,
    resolve_precision,
)
from unetkit.metrics import dice
from unetkit.model import UNet, UNetConfig

#: Every case of the shared table with batch norm, and a batch norm without affine parameters.
FOLD_CASES = [
    *model_cases.cases(norm="batch"),
    pytest.param(model_cases.Case(2, {"norm": {"type": "batch", "affine": False}}), id="no-affine"),
]


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=g))
                    m.bias.copy_(torch.randn(n, generator=g))


def _model(**kw: object) -> UNet:
    torch.manual_seed(0)
    kw.setdefault("widths", (4, 8, 16))
    model = UNet(UNetConfig(**kw))  # type: ignore[arg-type]
    _randomise_norms(model)
    return model.eval()


def _input(model: UNet, size: int = 28, batch: int = 2) -> torch.Tensor:
    d = model.config.spatial_dims
    if model.config.padding == "valid":
        size = model.valid_input_sizes(40, 120)[0]
    return torch.randn(batch, model.config.in_channels, *([size] * d))


@pytest.mark.parametrize("case", FOLD_CASES)
def test_folded_fp32_model_equals_original(case: model_cases.Case) -> None:
    model = model_cases.make_model(case)
    _randomise_norms(model)
    model.eval()
    x = model_cases.make_input(model)
    with torch.no_grad():
        ref = model(x)
    fast = optimize_for_inference(model, precision="fp32")
    with torch.no_grad():
        out = fast(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert fast.folded > 0
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("case", model_cases.cases(dims=(2,)))
def test_every_case_optimised_in_fp32_gives_the_original_output(case: model_cases.Case) -> None:
    model = model_cases.make_model(case, settled=True)
    x = model_cases.make_input(model)
    with torch.no_grad():
        ref = model(x)
        out = optimize_for_inference(model, precision="fp32")(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_folding_leaves_a_point_of_an_unknown_option_as_it_is() -> None:
    class Gated(nn.Module):  # a fusion option written later, unknown to the folding
        fusion = "gated"

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            return self.inner(up, skip)

    model = _model()
    model.decoder.fuses[0] = Gated(model.decoder.fuses[0])
    x = _input(model)
    with torch.no_grad():
        ref = model(x)
        fast = optimize_for_inference(model, precision="fp32")
        out = fast(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    left = [n for n, m in fast.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert left == ["model.decoder.fuses.0.inner.norm_joint"]


def test_optimising_leaves_the_original_model_unchanged() -> None:
    model = _model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(model, precision="fp32")
    assert model.training
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_instance_norm_is_left_in_place_and_output_still_matches() -> None:
    model = _model(norm="instance")
    x = _input(model)
    fast = optimize_for_inference(model, precision="fp32")
    assert fast.folded == 0
    assert any(isinstance(m, nn.InstanceNorm2d) for m in fast.modules())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)


def test_output_is_float32_standard_layout_for_channels_last_run() -> None:
    model = _model()
    fast = optimize_for_inference(model, precision="fp32", channels_last=True)
    assert fast.channels_last
    y = fast(_input(model))
    assert y.dtype == torch.float32 and y.is_contiguous()


def test_fold_batch_norms_refuses_a_training_model() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(_model().train())


def test_precision_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "bf16_is_faster", lambda device="cpu": False)
    assert resolve_precision("auto") == "fp32"
    assert optimize_for_inference(_model()).precision == "fp32"
    monkeypatch.setattr(hardware, "bf16_is_faster", lambda device="cpu": True)
    assert resolve_precision("auto") == "bf16"
    assert resolve_precision("fp32") == "fp32"


def test_bad_options_raise_value_error_naming_the_option() -> None:
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="channels_last"):
        resolve_channels_last("yes", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels_last"):
        resolve_channels_last(True, 1)
    with pytest.raises(ValueError, match="model"):
        optimize_for_inference("not a model")  # type: ignore[arg-type]


def test_channels_last_auto_is_off_for_1d() -> None:
    fast = optimize_for_inference(_model(spatial_dims=1), precision="fp32")
    assert isinstance(fast, OptimizedModel) and not fast.channels_last


def _train_small_model(images: np.ndarray, masks: np.ndarray, steps: int) -> UNet:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = UNet(UNetConfig(widths=(8, 16, 32)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(4):
            i = int(rng.integers(len(images)))
            r, c = rng.integers(0, images.shape[-1] - 96, size=2)
            xs.append(images[i, :, r : r + 96, c : c + 96])
            ys.append(masks[i, r : r + 96, c : c + 96])
        opt.zero_grad()
        F.cross_entropy(
            model(torch.from_numpy(np.stack(xs))), torch.from_numpy(np.stack(ys))
        ).backward()
        opt.step()
    return model.eval()


@pytest.mark.skipif(not hardware.native_bf16("cpu"), reason="no native bf16 on this CPU")
def test_bf16_label_maps_agree_with_fp32_on_real_images(shared_data) -> None:
    from unetkit.io.images import read_image, read_mask

    root = shared_data / "isbi2012-em"
    paths = sorted((root / "images").glob("*.png"))[:8]
    images = np.stack([read_image(p)[:, :256, :256] for p in paths])
    images = (images - images.mean(axis=(1, 2, 3), keepdims=True)) / images.std(
        axis=(1, 2, 3), keepdims=True
    )
    masks = np.stack([read_mask(root / "masks" / p.name)[:256, :256] for p in paths])
    model = _train_small_model(images[:6], masks[:6], steps=40)
    x = torch.from_numpy(images.astype(np.float32))
    with torch.inference_mode():
        ref = model(x).argmax(1).numpy()
        fast = optimize_for_inference(model, precision="bf16")
        assert fast.precision == "bf16"
        got = fast(x).argmax(1).numpy()
    scores = [dice(a, b, 2)[1] for a, b in zip(got, ref, strict=True)]
    assert float(np.mean(scores)) >= 0.995


def test_fast_model_is_cached_and_rebuilt_when_weights_change() -> None:
    model = _model()
    x = _input(model)
    first = fast_model(model)
    assert fast_model(model) is first
    assert fast_model(first) is first
    with torch.no_grad():
        model.head.weight.add_(1.0)  # an optimiser step changes weights in place
    second = fast_model(model)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(x), model(x), rtol=1e-5, atol=1e-4)
