"""The fastest accurate inference path for a U-Net.

:func:`optimize_for_inference` returns a copy of a model, wrapped so that its forward takes
float32 ``(B, C, *S)`` and returns float32 logits, with the measured speed-ups applied:

* **Batch-norm folding** (exact in fp32): a BatchNorm after a convolution becomes part of the
  convolution's weights and bias; a BatchNorm on the concatenated decoder map is split, the half
  that belongs to the upsampled branch folded into the up-convolution and the skip half kept as
  one per-channel multiply-add (or folded into the 1x1 reduction for ``concat_1x1``).
* **channels_last** memory format, which oneDNN's convolutions prefer on CPU.
* **bf16 autocast** where bf16 is faster than fp32 (CPUs with AMX-BF16, CUDA GPUs); fp32
  accumulation happens inside oneDNN, and the 1x1 output head stays in fp32 so the logits are
  as precise as the features allow. AVX-512 BF16 alone is *not* enough: measured on a Xeon
  without AMX, bf16 convolutions ran at half the fp32 rate, so "auto" stays in fp32 there.
* optionally ``torch.compile`` (off by default: compiling takes tens of seconds per input
  shape, which a command-line run rarely wins back; see ``benchmarks/README.md``).

Instance and group norms depend on the data and are left as they are.
"""

from __future__ import annotations

import copy
import itertools
import logging
import weakref
from typing import Literal

import torch
from torch import Tensor, nn

from unetkit import precision as policy
from unetkit.infer.fold import (  # noqa: F401  (re-exported: the folding API's old home)
    FoldedFuse,
    bn_affine,
    fold_batch_norms,
    scale_input_channels,
    scale_output_channels,
)

log = logging.getLogger(__name__)

Precision = policy.Precision
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"fp32"`` or ``"bf16"``: :func:`unetkit.precision.inference_precision` (the one policy)."""
    return policy.inference_precision(precision, device)


def resolve_channels_last(
    channels_last: bool | Literal["auto"], spatial_dims: int, device: torch.device | str = "cpu"
) -> bool:
    """Whether to run in channels_last (:func:`unetkit.precision.use_channels_last`, strict)."""
    return policy.use_channels_last(channels_last, spatial_dims, device, strict=True)


memory_format = policy.memory_format


def _relu_in_place(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.ReLU | nn.LeakyReLU):
            m.inplace = True


class _Float32(nn.Module):
    """Runs ``module`` in fp32 with autocast off: ``(B, C, *S)`` any float -> float32."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


# --- the optimised model -----------------------------------------------------------------------


class OptimizedModel(nn.Module):
    """An inference-only copy of a model: ``x: (B, C, *S) float32 -> (B, K, *S') float32``.

    Attributes say what was applied: ``precision`` (``"fp32"``/``"bf16"``), ``channels_last``,
    ``folded`` (number of batch norms folded), ``compiled``; ``config`` is the wrapped model's
    config (``None`` for a model without one). The output is contiguous in the standard format.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        precision: str,
        channels_last: bool,
        spatial_dims: int,
        folded: int,
        compiled: bool,
    ) -> None:
        super().__init__()
        self.model = model
        self.config = getattr(model, "config", None)
        self.precision = precision
        self.channels_last = channels_last
        self.spatial_dims = spatial_dims
        self.folded = folded
        self.compiled = compiled
        self._run: nn.Module = model

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.ndim == self.spatial_dims + 2:
            x = policy.as_channels_last(x, self.spatial_dims)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = self._run(x)  # (B, K, *S')
        return y.float().contiguous()

    def extra_repr(self) -> str:
        return (
            f"precision={self.precision}, channels_last={self.channels_last}, "
            f"folded={self.folded}, compiled={self.compiled}"
        )


def _count_batch_norms(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, _BATCHNORMS))


def optimize_for_inference(
    model: nn.Module,
    *,
    precision: Precision = "auto",
    channels_last: bool | Literal["auto"] = "auto",
    fold_norm: bool = True,
    compile: bool = False,
) -> OptimizedModel:
    """A faster, inference-only copy of ``model``; ``model`` itself is not changed.

    ``forward``: ``x: (B, C, *S) float32 -> (B, K, *S') float32 logits``, as ``model`` in eval
    mode, within float rounding (fp32: ~1e-5 relative; bf16: label maps that agree with fp32).

    Args:
        model: a unetkit :class:`~unetkit.model.UNet` (or any module taking ``(B, C, *S)``;
            batch-norm folding then applies only to unetkit blocks inside it).
        precision: ``"auto"`` (bf16 where the processor runs it natively, else fp32),
            ``"fp32"`` or ``"bf16"``.
        channels_last: ``"auto"`` (yes for 2D/3D), ``True`` or ``False``.
        fold_norm: fold eval-mode batch norms into the convolutions.
        compile: wrap the network in ``torch.compile`` (compiles on the first call of each new
            input shape, which takes tens of seconds on a CPU).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    config = getattr(model, "config", None)
    spatial_dims = int(getattr(config, "spatial_dims", 2))
    chosen = resolve_precision(precision, device)
    use_cl = resolve_channels_last(channels_last, spatial_dims, device)

    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    before = _count_batch_norms(net)
    if fold_norm:
        fold_batch_norms(net)
    folded = before - _count_batch_norms(net)
    _relu_in_place(net)
    if chosen == "bf16" and isinstance(getattr(net, "head", None), nn.Module):
        net.head = _Float32(net.head)  # logits from bf16 features, computed in fp32
    if use_cl:
        net = net.to(memory_format=memory_format(spatial_dims))
    wrapped = OptimizedModel(
        net,
        precision=chosen,
        channels_last=use_cl,
        spatial_dims=spatial_dims,
        folded=folded,
        compiled=compile,
    )
    if compile:
        wrapped._run = torch.compile(net)  # type: ignore[assignment]
    return wrapped


# --- a cached fast path for callers that receive a plain model ----------------------------------

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def _state_key(model: nn.Module) -> tuple[int, ...]:
    """Changes whenever a parameter or buffer of ``model`` is replaced or changed in place."""
    key: list[int] = []
    for t in itertools.chain(model.parameters(), model.buffers()):
        key += [t.data_ptr(), t._version]
    return tuple(key)


def fast_model(model: nn.Module) -> nn.Module:
    """``optimize_for_inference(model)`` with defaults, cached per model and rebuilt when its
    weights or statistics change (e.g. between validations during training).

    An :class:`OptimizedModel` comes back as it is. A model the optimiser cannot copy (e.g. a
    scripted module) comes back unchanged, so callers can always use the result as ``model``.
    ``forward``: ``(B, C, *S) -> (B, K, *S')`` float32, as ``model`` in eval mode.
    """
    if isinstance(model, OptimizedModel):
        return model
    key = _state_key(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        fast: nn.Module = optimize_for_inference(model)
    except (TypeError, RuntimeError, ValueError) as err:
        log.debug("fast_model: using the model as it is (%s)", err)
        fast = model
    _CACHE[model] = (key, fast)
    return fast
