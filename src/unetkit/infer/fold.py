"""Batch-norm folding of a unetkit U-Net, following the model's public walk.

In eval mode a batch norm is ``y = scale * x + shift`` per channel, so it can become part of
the convolution before it (exact in float, up to rounding):

* in a block (``ConvNormAct``), into that convolution;
* on the decoder's fused map, split by branch: the up-sampled half into the up-convolution of
  the same level, the skip half kept as one per-channel multiply-add (:class:`FoldedFuse`), or
  folded into the 1x1 reduction for ``concat_1x1``.

:func:`fold_batch_norms` walks :meth:`unetkit.model.UNet.points`: ``block`` points fold every
``ConvNormAct`` inside them, each ``fuse`` point folds with the ``up`` point before it, and
``down``/``up``/``head`` points hold no norm. A point of a kind or option not listed is left as
it is (folding is an exact optimisation, so leaving a norm is always correct). Instance and
group norms depend on the data and stay.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from unetkit.model import UNet
from unetkit.model.blocks import ConvNormAct, center_crop
from unetkit.model.walk import Point

log = logging.getLogger(__name__)

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: The fusions whose norm folds (``none`` has no norm).
_FOLDABLE_FUSIONS = ("concat", "concat_1x1", "add")


def _foldable(norm: nn.Module) -> bool:
    return (
        isinstance(norm, _BATCHNORMS)
        and norm.track_running_stats
        and norm.running_mean is not None
        and norm.running_var is not None
    )


def bn_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """The eval-mode batch norm as ``y = scale * x + shift``; ``(C,)`` each, float64."""
    var = norm.running_var.double()  # type: ignore[union-attr]
    mean = norm.running_mean.double()  # type: ignore[union-attr]
    scale = torch.rsqrt(var + norm.eps)  # type: ignore[operator]
    if norm.affine:  # type: ignore[union-attr]
        scale = scale * norm.weight.double()  # type: ignore[union-attr]
        shift = norm.bias.double() - mean * scale  # type: ignore[union-attr]
    else:
        shift = -mean * scale
    return scale, shift


@torch.no_grad()
def scale_output_channels(conv: nn.Module, scale: Tensor, shift: Tensor) -> None:
    """In place: make ``conv`` compute ``scale * conv(x) + shift`` per output channel.

    Works for ``Conv{1,2,3}d`` (weight ``(C_out, C_in/g, *k)``) and ``ConvTranspose{1,2,3}d``
    (weight ``(C_in, C_out/g, *k)``, groups 1). A missing bias is created.
    """
    weight = conv.weight  # type: ignore[union-attr]
    if isinstance(conv, _CONV_TRANSPOSE):
        if conv.groups != 1:
            raise ValueError(
                "scale_output_channels: grouped transposed convolutions are not folded"
            )
        view = (1, -1) + (1,) * (weight.ndim - 2)
    else:
        view = (-1,) + (1,) * (weight.ndim - 1)
    weight.copy_((weight.double() * scale.view(view)).to(weight.dtype))
    bias = conv.bias  # type: ignore[union-attr]
    old = bias.double() if bias is not None else torch.zeros_like(scale)
    new = (old * scale + shift).to(weight.dtype)
    if bias is None:
        conv.bias = nn.Parameter(new, requires_grad=weight.requires_grad)  # type: ignore[union-attr]
    else:
        bias.copy_(new)


@torch.no_grad()
def scale_input_channels(conv: nn.Module, scale: Tensor, shift: Tensor) -> None:
    """In place: make an unpadded 1x1 ``conv`` compute ``conv(scale * x + shift)`` exactly."""
    weight = conv.weight  # type: ignore[union-attr]
    w = weight.double().flatten(1)  # (C_out, C_in)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros(w.shape[0])  # type: ignore[union-attr]
    new_bias = bias + w @ shift
    weight.copy_((w * scale).view_as(weight).to(weight.dtype))
    if conv.bias is None:  # type: ignore[union-attr]
        conv.bias = nn.Parameter(new_bias.to(weight.dtype), requires_grad=weight.requires_grad)
    else:
        conv.bias.copy_(new_bias.to(weight.dtype))  # type: ignore[union-attr]


class FoldedFuse(nn.Module):
    """The decoder's fusion after batch-norm folding: ``cat(up, scale * skip + shift)``.

    ``up: (B, C, *S), skip: (B, C, *S_skip) -> (B, 2C or C, *S)``; the upsampled branch already
    carries its normalisation (folded into the up-convolution), so only the skip branch needs a
    per-channel multiply-add. ``fusion`` is ``"concat"``, ``"concat_1x1"`` or ``"add"``.
    """

    def __init__(
        self,
        fusion: str,
        scale: Tensor | None,
        shift: Tensor | None,
        reduce: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.fusion = fusion
        self.affine = scale is not None
        if scale is not None and shift is not None:
            self.register_buffer("scale", scale.float().view(1, -1))
            self.register_buffer("shift", shift.float().view(1, -1))
        self.reduce = reduce

    def forward(self, up: Tensor, skip: Tensor | None) -> Tensor:
        if skip is None:
            return up
        skip = center_crop(skip, up.shape[2:])  # valid mode: the paper's crop
        if self.affine:
            view = (1, -1) + (1,) * (skip.ndim - 2)
            scale = self.scale.view(view).to(skip.dtype)
            shift = self.shift.view(view).to(skip.dtype)
            skip = torch.addcmul(shift, skip, scale)  # (B, C, *S)
        if self.fusion == "add":
            return up + skip.to(up.dtype)
        y = torch.cat([up, skip.to(up.dtype)], dim=1)  # (B, 2C, *S)
        return self.reduce(y) if self.reduce is not None else y


def _fold_fuse(up: nn.Module, fuse: nn.Module) -> nn.Module:
    """A :class:`FoldedFuse` equal to ``fuse`` (in eval mode), or ``fuse`` if it cannot fold.

    ``up`` is the ``Up`` module of the same level, whose convolution takes the up-sampled
    branch's share of the norm.
    """
    if not getattr(fuse, "use_norm", False) or fuse.fusion not in _FOLDABLE_FUSIONS:
        return fuse
    up_conv = up.conv
    reduce = getattr(fuse, "reduce", None)
    if fuse.norm_placement == "before_concat":
        if not (_foldable(fuse.norm_up) and _foldable(fuse.norm_skip)):
            return fuse
        scale_output_channels(up_conv, *bn_affine(fuse.norm_up))
        skip_scale, skip_shift = bn_affine(fuse.norm_skip)
        if fuse.fusion == "concat_1x1":
            channels = skip_scale.numel()
            ones, zeros = torch.ones(channels).double(), torch.zeros(channels).double()
            scale_input_channels(
                reduce, torch.cat([ones, skip_scale]), torch.cat([zeros, skip_shift])
            )
            return FoldedFuse(fuse.fusion, None, None, reduce)
        return FoldedFuse(fuse.fusion, skip_scale, skip_shift, reduce)
    if not _foldable(fuse.norm_joint):
        return fuse
    scale, shift = bn_affine(fuse.norm_joint)
    if fuse.fusion == "concat_1x1":  # norm then an unpadded 1x1 conv: fold it forward, exactly
        scale_input_channels(reduce, scale, shift)
        return FoldedFuse(fuse.fusion, None, None, reduce)
    if fuse.fusion == "add":  # scale * (up + skip) + shift
        scale_output_channels(up_conv, scale, shift)
        return FoldedFuse(fuse.fusion, scale, torch.zeros_like(shift), None)
    channels = scale.numel() // 2  # concat: [up channels | skip channels]
    scale_output_channels(up_conv, scale[:channels], shift[:channels])
    return FoldedFuse(fuse.fusion, scale[channels:], shift[channels:], None)


def _replace(net: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at state-dict name ``name`` of ``net`` (e.g. ``decoder.fuses.1``)."""
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def _fold_block(block: nn.Module) -> None:
    for layer in block.modules():
        if isinstance(layer, ConvNormAct) and _foldable(layer.norm):
            scale_output_channels(layer.conv, *bn_affine(layer.norm))
            layer.norm = nn.Identity()


@torch.no_grad()
def fold_unet(net: UNet) -> UNet:
    """In place: fold the batch norms of ``net`` (eval mode) point by point along its walk."""
    up: Point | None = None
    for point in net.points():
        if point.kind == "block":
            _fold_block(point.module)
        elif point.kind == "up":
            up = point
        elif point.kind == "fuse":
            if up is not None and up.level == point.level and hasattr(up.module, "conv"):
                folded = _fold_fuse(up.module, point.module)
                if folded is not point.module:
                    _replace(net, point.name, folded)
        elif point.kind not in ("down", "head", "deep_head"):
            log.debug("fold: %s (%s %r) left as it is", point.name, point.kind, point.option)
    return net


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> nn.Module:
    """In place: fold every eval-mode batch norm of the unetkit U-Nets in ``model``.

    ``model`` must be in eval mode (folding uses the running statistics). Returns ``model``,
    whose eval-mode outputs equal the original's up to float rounding. Norms that cannot fold
    (instance, group, batch norm without running statistics) are left in place.
    """
    if model.training:
        raise ValueError("fold_batch_norms: the model must be in eval mode (call model.eval())")
    for net in [m for m in model.modules() if isinstance(m, UNet)]:
        fold_unet(net)
    return model
