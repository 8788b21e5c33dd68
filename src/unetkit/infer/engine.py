"""The one place where the network is called during inference.

Every prediction path (whole image, tiles, test-time augmentation, export checks) goes through
:func:`run_network`, so a faster execution path (channels-last, reduced precision, folded
batch norm; see ``unetkit.infer.optimize``) can be routed in here without touching the tiling.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from unetkit import precision as policy
from unetkit.infer.calibration_entry import AUTO_AGREEMENT, Int8Calibration
from unetkit.infer.optimize import _state_key, fast_model, optimize_for_inference
from unetkit.modelfile import weights_digest

log = logging.getLogger(__name__)


def run_network(model: nn.Module, batch: Tensor, *, fast: bool = True) -> Tensor:
    """Run ``model`` in eval mode without autograd: ``(B, C_in, *S) -> (B, K, *S_out)`` float32.

    ``fast``: run the optimised copy from :func:`unetkit.infer.optimize.fast_model` (batch norm
    folded into the convolutions, channels-last, bf16 only where it is measured faster on this
    processor), cached and rebuilt when the weights change; ``False`` runs the model as it is.
    The model's train/eval state is restored afterwards, so a model that was training keeps
    training. The output is always ``float32`` on the input's device.
    """
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode(), policy.exact_fp32(batch.device):
            net = fast_model(model) if fast else model
            out = net(batch)
    finally:
        if was_training:
            model.train()
    return out.float()


#: What prediction accepts: the float choices of :mod:`unetkit.precision`, and int8.
PRECISIONS = (*(p for p in policy.PRECISIONS if p != "fp16"), "int8")  # fp16: training only

_NET_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def inference_network(
    model: nn.Module, precision: str = "auto", int8: Mapping[str, Any] | None = None
) -> nn.Module:
    """The network that prediction runs for ``model``: ``(B, C, *S) -> (B, K, *S')`` float32.

    ``precision``:

    * ``"auto"``: int8 (:mod:`unetkit.infer.int8`) where ``int8`` (the model file's
      ``metadata["int8"]`` calibration) was measured to agree with fp32 (foreground Dice at
      least :data:`unetkit.infer.calibration_entry.AUTO_AGREEMENT`), was made for these weights, and
      the CPU has VNNI; otherwise the optimised float path (:func:`fast_model`: folded batch
      norm, channels-last, bf16 only where it is faster), in fp32 where the calibration
      measured bf16 label maps below that agreement (:func:`bf16_disagrees`).
    * ``"fp32"`` / ``"bf16"``: the optimised float path in that precision (float decisions,
      ``auto``'s included, are :func:`unetkit.precision.inference_precision`'s).
    * ``"int8"``: int8 regardless of the measured agreement or the CPU; needs ``int8``.

    Built once per model, calibration and precision, and rebuilt when the weights change.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision in ("auto", "int8"):
        net = _int8_network(model, int8, explicit=precision == "int8")
        if net is not None:
            return net
    if precision == "auto":
        if not bf16_disagrees(model, int8):
            return fast_model(model)
        precision = "fp32"
    key = (_state_key(model), precision)
    hit = _NET_CACHE.get(model)
    if hit is None or hit[0] != key:
        hit = (key, optimize_for_inference(model, precision=precision))  # type: ignore[arg-type]
        _NET_CACHE[model] = hit
    return hit[1]


def bf16_disagrees(model: nn.Module, entry: Mapping[str, Any] | None) -> bool:
    """Whether ``entry`` (a model file's ``metadata["int8"]``, made for these weights) measured
    bf16 label maps agreeing with fp32 below :data:`AUTO_AGREEMENT` on held-out images."""
    calibration = Int8Calibration.from_metadata(entry)
    if calibration is None or calibration.bf16_agreement is None:
        return False
    if calibration.bf16_agreement >= AUTO_AGREEMENT:
        return False
    return _made_for(model, calibration.weights_sha256)


_DIGESTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def _made_for(model: nn.Module, recorded: str | None) -> bool:
    """Whether a calibration made for the weights digest ``recorded`` (``None``: an older entry
    that did not record it) applies to ``model``. The digest (milliseconds for a large model)
    is computed once per state of the weights, not on every prediction call."""
    if recorded is None:
        return True
    key = _state_key(model)
    hit = _DIGESTS.get(model)
    if hit is None or hit[0] != key:
        hit = (key, weights_digest(model))
        _DIGESTS[model] = hit
    return hit[1] == recorded


def _int8_network(
    model: nn.Module, entry: Mapping[str, Any] | None, *, explicit: bool
) -> nn.Module | None:
    from unetkit.infer import int8 as q

    def refuse(why: str) -> None:
        if explicit:
            raise ValueError(f"precision int8: {why}")
        log.debug("int8 not used: %s", why)

    reason = q.unsupported_reason(model)
    if reason is not None:
        return refuse(reason)
    calibration = Int8Calibration.from_metadata(entry)
    if calibration is None:
        return refuse(
            "the model has no int8 calibration; run 'unetkit calibrate --model MODEL --data DIR' "
            "(models trained by 'unetkit train' carry one)"
        )
    if not explicit:
        if not calibration.agrees:
            return refuse(
                f"measured agreement with fp32 {calibration.agreement} < {AUTO_AGREEMENT}"
            )
        if not q.has_vnni():
            return refuse("this CPU has no VNNI, int8 would not be faster")
    ranges = calibration.to_metadata()["ranges"]
    fp32, factors, bias = calibration.fp32_layers, calibration.factors, calibration.bias
    key = (
        _state_key(model),
        "int8",
        json.dumps([ranges, fp32, factors, bias], sort_keys=True, default=str),
    )
    hit = _NET_CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    if not _made_for(model, calibration.weights_sha256):
        return refuse(
            "the int8 calibration was made for other weights; run 'unetkit calibrate' again"
        )
    net = q.quantize_for_inference(model, ranges, fp32=fp32, factors=factors, bias=bias)  # type: ignore[arg-type]
    _NET_CACHE[model] = (key, net)
    return net
