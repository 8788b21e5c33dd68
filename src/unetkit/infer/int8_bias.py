"""Bias correction: the mean shift that weight rounding adds to each int8 layer's output, removed.

Rounding a convolution's weights to int8 changes its output by ``conv(x, W_q - W)``. Over many
pixels the error averages out except for its mean: for channel ``o``, about
``sum_{i,k} (W_q - W)[o, i, k] * E[x_i]``, which is not zero when the inputs are ReLU maps
(positive means) and the rounding errors of a row do not cancel. That shift moves every pixel of
the channel the same way, so on a model whose labels sit close to ties it flips labels in bulk.
The classic data-aware correction (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", 2019, section 4.2, with empirical input means) measures the
shift on calibration patches, with the float network's own input to each layer, and subtracts
it from the layer's bias.

:func:`bias_corrections` returns ``{layer: [delta per output channel]}`` for every int8 layer
(names of :func:`unetkit.infer.int8.layer_names`); for an up-sampling the channels are those of
its 1x1 form (:class:`unetkit.infer.int8_layers.QuantizedUp`, offset first). The calibration
stores them (``int8.bias_correction``) and :func:`unetkit.infer.int8.quantize_for_inference`
adds them to the quantised copies' biases (a layer kept in fp32 ignores its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.infer.int8 import folded_copy, quantize_for_inference
from unetkit.infer.int8_equalize import Factors
from unetkit.infer.int8_layers import pointwise_weight
from unetkit.infer.int8_run import Runner
from unetkit.model import UNet

__all__ = ["Corrections", "bias_corrections"]

#: ``{layer name: per-output-channel value added to its int8 bias}`` as stored.
Corrections = dict[str, list[float]]

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def bias_corrections(
    model: UNet,
    batches: Iterable[Tensor],
    ranges: Mapping[str, Any],
    *,
    factors: Factors | None = None,
) -> Corrections:
    """Per int8 layer of ``model``, minus the mean over ``batches`` of ``conv(x, W_q - W)``
    per output channel (module doc), ``x`` the float network's input to the layer.

    ``batches``: normalised ``(B, C, *S)`` inputs (the calibration patches); ``ranges`` and
    ``factors``: the calibration's (the weights are rounded after equalisation, as at
    prediction). Raises :class:`unetkit.infer.int8.Int8Unsupported` for a model without an
    int8 path.
    """
    quantised = quantize_for_inference(model, ranges, factors=factors).runner.quantized
    runner = Runner(folded_copy(model, factors))
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    errors: dict[str, Tensor] = {}

    def observe(name: str, layer: nn.Module, x: Tensor) -> None:
        q = quantised[name]
        q = getattr(q, "pointwise", q)  # an up-sampling: its 1x1 form
        error = errors.get(name)
        if error is None:
            conv = getattr(layer, "conv", layer)  # a block's ConvNormAct: its convolution
            weight = pointwise_weight(conv) if isinstance(conv, _CONV_T) else conv.weight
            error = errors[name] = q.weight().dequantize() - weight.detach().float()
        shift = _CONV_FN[error.ndim - 2](
            x.float(), error, None, q.stride, q.padding, q.dilation
        )  # (B, C_out, *S')
        dims = [0, *range(2, shift.ndim)]
        sums[name] = sums.get(name, 0) + shift.double().sum(dim=dims)
        counts[name] = counts.get(name, 0) + shift.numel() // shift.shape[1]

    runner.inputs = observe
    with torch.inference_mode():
        for x in batches:
            runner.run(x.float())
    return {name: (-(sums[name] / counts[name])).float().tolist() for name in sums}
