"""The U-Net's blocks: ConvNormAct, ConvBlock, ConvStage, Down, Up, Fuse, crop/pad helpers.

Each block's docstring shows its data flow in one line. Arguments use the config's names
(``in_channels``, ``convs_per_block``, ``block``, ``down``, ``up``, ``norm_placement``), and each
block keeps the option that chose it under the same name. Convolutions record the gain of what
follows them and their true fan-in (``unetkit_gain``, ``unetkit_fan_in``) so that
:func:`unetkit.model.init.init_weights` can apply He initialisation exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.model import layers
from unetkit.model.conditioning import FiLM, SelfAttention
from unetkit.model.config import LayerSpec, UNetConfig


def tag_conv(module: nn.Module, *, gain: float, fan_in: int) -> nn.Module:
    """Record the He gain and the true fan-in of a convolution for initialisation."""
    module.unetkit_gain = gain  # type: ignore[assignment]
    module.unetkit_fan_in = fan_in  # type: ignore[assignment]
    return module


def center_crop(x: Tensor, size: Sequence[int]) -> Tensor:
    """Crop the spatial axes of ``x`` to ``size`` around the centre.

    ``x: (B, C, *S) -> (B, C, *size)``; requires ``S[i] >= size[i]`` and an even difference
    per axis (true for every U-Net with odd kernels), so the crop is exactly centred.
    """
    spatial = x.shape[2:]
    if tuple(spatial) == tuple(size):
        return x
    slices: list[slice] = [slice(None), slice(None)]
    for have, want in zip(spatial, size, strict=True):
        diff = have - want
        if diff < 0 or diff % 2:
            raise ValueError(f"center_crop: cannot centre-crop {tuple(spatial)} to {tuple(size)}")
        slices.append(slice(diff // 2, diff // 2 + want))
    return x[tuple(slices)]


def pad_to_multiple(x: Tensor, multiple: int | Sequence[int]) -> tuple[Tensor, tuple[int, ...]]:
    """Pad the spatial axes of ``x`` at their far end to a multiple of ``multiple`` (one per axis).

    ``x: (B, C, *S) -> (B, C, *P)`` with ``P[i] = ceil(S[i] / multiple) * multiple``; returns the
    original spatial size for cropping back. Padding only at the far end never shifts content.
    Mirrors the border (reflect) where the axis is long enough, else replicates it.
    """
    spatial = tuple(int(s) for s in x.shape[2:])
    per_axis = [multiple] * len(spatial) if isinstance(multiple, int) else list(multiple)
    target = tuple(math.ceil(s / m) * m for s, m in zip(spatial, per_axis, strict=True))
    if target == spatial:
        return x, spatial
    pads: list[int] = []
    for s, t in zip(reversed(spatial), reversed(target), strict=True):
        pads += [0, t - s]
    mode = (
        "reflect" if all(t - s < s for s, t in zip(spatial, target, strict=True)) else "replicate"
    )
    return F.pad(x, pads, mode=mode), spatial


def crop_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Keep the first ``size[i]`` elements of each spatial axis: ``(B, C, *P) -> (B, C, *size)``."""
    return x[(slice(None), slice(None), *(slice(0, s) for s in size))]


def _same_pad(kernel_size: int | Sequence[int]) -> int | tuple[int, ...]:
    """'same' padding ``(k - 1) // 2`` of an odd kernel, per axis where the kernel is per axis."""
    if isinstance(kernel_size, int):
        return (kernel_size - 1) // 2
    return tuple((k - 1) // 2 for k in kernel_size)


class ConvNormAct(nn.Module):
    """``x -> conv(k) -> norm -> act``; ``(B, in_channels, *S) -> (B, out_channels, *S')``.

    ``S' = S`` with ``padding="same"`` and ``S - (k - 1)`` with ``"valid"``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int],
        padding: str,
        norm: LayerSpec,
        act: LayerSpec,
        with_act: bool = True,
    ) -> None:
        super().__init__()
        k = kernel_size
        pad = _same_pad(k) if padding == "same" else 0
        has_norm = layers.spec_name(norm) != "none"
        conv = layers.conv(
            spatial_dims, in_channels, out_channels, kernel_size, padding=pad, bias=not has_norm
        )
        self.conv = tag_conv(
            conv,
            gain=layers.act_gain(act) if with_act else 1.0,
            fan_in=in_channels * (k**spatial_dims if isinstance(k, int) else math.prod(k)),
        )
        self.norm = layers.norm(norm, spatial_dims, out_channels)
        self.act = layers.act(act, inplace=True) if with_act else nn.Identity()  # on a fresh map

    def forward(self, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        y = self.norm(self.conv(x))
        if film is not None:  # time conditioning: y * (1 + scale) + shift, before the act
            y = y * (1 + film[0]) + film[1]
        return self.act(y)


class ConvBlock(nn.Module):
    """``x -> [conv -> norm -> act] * convs_per_block (+ shortcut(x)) [-> dropout]``.

    ``(B, in_channels, *S) -> (B, out_channels, *S')``.

    ``block="residual"`` adds a shortcut (identity, or a 1x1 convolution when channels change,
    centre-cropped in valid mode) before the last activation.

    Conditioned (``embed_dim > 0``): ``forward(x, emb)`` with ``emb: (B, embed_dim)`` scales and
    shifts the first convolution's normalised output per channel (``film``). ``attention``
    ends the block with self-attention (``attention``, before the dropout).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        convs_per_block: int,
        kernel_size: int | Sequence[int],
        padding: str,
        norm: LayerSpec,
        act: LayerSpec,
        block: str = "plain",
        dropout: float = 0.0,
        embed_dim: int = 0,
        attention: bool = False,
    ) -> None:
        super().__init__()
        self.block = block
        self.residual = block == "residual"
        self.convs = nn.ModuleList(
            ConvNormAct(
                spatial_dims,
                in_channels if i == 0 else out_channels,
                out_channels,
                kernel_size=kernel_size,
                padding=padding,
                norm=norm,
                act=act,
                with_act=not (self.residual and i == convs_per_block - 1),
            )
            for i in range(convs_per_block)
        )
        if self.residual:
            self.shortcut: nn.Module = (
                nn.Identity()
                if in_channels == out_channels
                else tag_conv(
                    layers.conv(spatial_dims, in_channels, out_channels, 1),
                    gain=1.0,
                    fan_in=in_channels,
                )
            )
            self.out_act: nn.Module = layers.act(act, inplace=True)  # on the fresh sum
        if embed_dim > 0:
            self.film = FiLM(embed_dim, out_channels, spatial_dims)
        if attention:
            self.attention = SelfAttention(spatial_dims, out_channels)
        self.dropout = layers.DROPOUT[spatial_dims](dropout) if dropout > 0 else nn.Identity()

    @classmethod
    def from_config(
        cls,
        config: UNetConfig,
        in_channels: int,
        out_channels: int,
        *,
        dropout: float = 0.0,
        level: int = 0,
        attention: bool = False,
    ) -> ConvBlock:
        """The block of encoder or decoder level ``level``, as ``config`` describes it."""
        return cls(
            config.spatial_dims,
            in_channels,
            out_channels,
            convs_per_block=config.convs_per_block,
            kernel_size=config.kernel_size
            if config.kernel_sizes is None
            else config.kernel_at(level),
            padding=config.padding,
            norm=config.norm,
            act=config.act,
            block=config.block,
            dropout=dropout,
            embed_dim=config.embed_dim if config.time_conditioning else 0,
            attention=attention,
        )

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        film = None
        if hasattr(self, "film"):
            if emb is None:
                raise ValueError("a time-conditioned block needs the embedding: forward(x, emb)")
            film = self.film(emb)  # 2 x (B, out_channels, 1, ...)
        y = x
        for j, layer in enumerate(self.convs):
            y = layer(y, film) if j == 0 and film is not None else layer(y)
        if self.residual:
            y = self.out_act(y + center_crop(self.shortcut(x), y.shape[2:]))
        if hasattr(self, "attention"):
            y = self.attention(y)
        return self.dropout(y)


class ConvStage(nn.Sequential):
    """``x -> block_0 -> block_1 -> ... -> block_{n-1}``: one encoder level of ``n >= 2`` blocks.

    ``(B, in_channels, *S) -> (B, out_channels, *S')``; only the first block changes the
    channels. Used where ``UNetConfig.encoder_blocks`` asks for more than one block at a level
    (a level with one block is a bare :class:`ConvBlock`, so older state-dict keys stay).
    """

    @classmethod
    def from_config(
        cls,
        config: UNetConfig,
        in_channels: int,
        out_channels: int,
        blocks: int,
        *,
        dropout: float = 0.0,
        level: int = 0,
        attention: bool = False,
    ) -> ConvStage:
        """``blocks`` blocks as ``config`` describes them; ``dropout`` (and ``attention``) end
        the last one."""
        return cls(
            *(
                ConvBlock.from_config(
                    config,
                    in_channels if j == 0 else out_channels,
                    out_channels,
                    dropout=dropout if j == blocks - 1 else 0.0,
                    level=level,
                    attention=attention and j == blocks - 1,
                )
                for j in range(blocks)
            )
        )

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        for block in self:
            x = block(x, emb)
        return x


class Down(nn.Module):
    """``x -> pool 2 (max | avg) | conv 2x2 stride 2``; ``(B, C, *S) -> (B, C, *S/2)``.

    ``down`` is the config's option: ``"maxpool"``, ``"avgpool"`` or ``"strided"``. ``stride``
    (one per axis, e.g. ``(1, 2, 2)``) replaces the 2: window and stride are both ``stride``.
    """

    def __init__(
        self, spatial_dims: int, channels: int, down: str, stride: int | Sequence[int] = 2
    ) -> None:
        super().__init__()
        self.down = down
        s = stride if isinstance(stride, int) else tuple(stride)
        if down == "maxpool":
            self.op: nn.Module = layers.MAXPOOL[spatial_dims](s)
        elif down == "avgpool":
            self.op = layers.AVGPOOL[spatial_dims](s)
        else:
            self.op = tag_conv(
                layers.conv(spatial_dims, channels, channels, s, stride=s),
                gain=1.0,
                fan_in=channels * (s**spatial_dims if isinstance(s, int) else math.prod(s)),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Up(nn.Module):
    """``x -> transposed conv 2x2 stride 2 | (interp x2 -> conv 1x1)``.

    ``(B, in_channels, *S) -> (B, out_channels, *2S)``; ``up`` is the config's option
    (``"transpose"`` or ``"interp"``); ``stride`` (one per axis) replaces the 2.

    The paper's "up-convolution" halves the channels: ``out_channels = in_channels / 2`` in a
    standard U-Net.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        up: str,
        stride: int | Sequence[int] = 2,
    ) -> None:
        super().__init__()
        self.up = up
        self.spatial_dims = spatial_dims
        s = stride if isinstance(stride, int) else tuple(stride)
        self.scale: float | tuple[float, ...] = (
            float(s) if isinstance(s, int) else tuple(float(v) for v in s)
        )
        if up == "transpose":
            # Stride equals kernel: each output element sees in_channels inputs (one per channel).
            self.conv = tag_conv(
                layers.CONV_T[spatial_dims](in_channels, out_channels, s, stride=s),
                gain=1.0,
                fan_in=in_channels,
            )
        else:
            self.conv = tag_conv(
                layers.conv(spatial_dims, in_channels, out_channels, 1),
                gain=1.0,
                fan_in=in_channels,
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.up == "interp":
            x = F.interpolate(
                x,
                scale_factor=self.scale,
                mode=layers.INTERP_MODE[self.spatial_dims],
                align_corners=False,
            )
        return self.conv(x)


class Fuse(nn.Module):
    """Join the upsampled map and the (centre-cropped) skip of the same level.

    ``up: (B, C, *S), skip: (B, C, *S_skip) -> (B, out_channels, *S)``, with ``out_channels``
    2C for ``concat``, C for ``concat_1x1``, ``add`` and ``none`` (skip ignored).

    ``norm_placement="after_concat"``: ``cat(up, skip) -> norm(2C)`` (the joint map).
    ``"before_concat"``: ``cat(norm(up), norm(skip))``. For ``add`` the same with a sum.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        *,
        fusion: str,
        norm: LayerSpec,
        norm_placement: str,
    ) -> None:
        super().__init__()
        self.fusion = fusion
        self.norm_placement = norm_placement
        joint = 2 * channels if fusion in ("concat", "concat_1x1") else channels
        self.out_channels = channels if fusion != "concat" else 2 * channels
        use_norm = fusion != "none" and layers.spec_name(norm) != "none"
        if use_norm and norm_placement == "before_concat":
            self.norm_up: nn.Module = layers.norm(norm, spatial_dims, channels)
            self.norm_skip: nn.Module = layers.norm(norm, spatial_dims, channels)
        elif use_norm:
            self.norm_joint: nn.Module = layers.norm(norm, spatial_dims, joint)
        self.use_norm = use_norm
        if fusion == "concat_1x1":
            self.reduce = tag_conv(
                layers.conv(spatial_dims, 2 * channels, channels, 1),
                gain=1.0,
                fan_in=2 * channels,
            )

    def forward(self, up: Tensor, skip: Tensor | None) -> Tensor:
        if self.fusion == "none" or skip is None:
            return up
        skip = center_crop(skip, up.shape[2:])  # valid mode: the paper's crop
        before = self.use_norm and self.norm_placement == "before_concat"
        if before:
            up, skip = self.norm_up(up), self.norm_skip(skip)
        y = up + skip if self.fusion == "add" else torch.cat([up, skip], dim=1)
        if self.use_norm and not before:
            y = self.norm_joint(y)
        if self.fusion == "concat_1x1":
            y = self.reduce(y)
        return y
