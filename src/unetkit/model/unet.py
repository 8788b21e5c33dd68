"""`UNet(config) = head(decoder(encoder(x)))`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from unetkit.model import layers, sizes
from unetkit.model.blocks import crop_to, pad_to_multiple, tag_conv
from unetkit.model.conditioning import ClassEmbedding, TimeEmbedding
from unetkit.model.config import UNetConfig
from unetkit.model.decoder import Decoder
from unetkit.model.encoder import Encoder
from unetkit.model.init import init_weights
from unetkit.model.walk import Point, Step, call


class UNet(nn.Module):
    """A U-Net for 1D, 2D or 3D dense prediction, fully determined by its :class:`UNetConfig`.

    ``forward``: ``x: (B, in_channels, *S) -> (B, out_channels, *S_out)`` where ``S_out = S`` in
    ``same`` mode (any size: the input is padded to a multiple of :attr:`downsample_factor` at
    its far end and the output cropped back, so nothing shifts) and
    ``S_out = output_size(S)`` in ``valid`` mode (a size that cannot work raises ``ValueError``
    naming the nearest valid sizes).

    State-dict keys are stable public API: ``encoder.blocks.{i}``, ``encoder.downs.{i}``,
    ``decoder.ups.{i}``, ``decoder.fuses.{i}``, ``decoder.blocks.{i}``, ``head``, and
    ``deep_heads.{i}`` with deep supervision; ``i`` is the resolution level (an encoder level of
    several blocks, ``encoder_blocks``, has ``encoder.blocks.{i}.{j}``).

    The walk (:mod:`unetkit.model.walk`): :meth:`points` names every computation point and
    :meth:`forward_core` runs the network without padding and crop, point by point.

    Time-conditioned (``time_conditioning=True``, the denoiser of a diffusion model):
    ``forward(x, t, labels=None)`` with ``t: (B,)`` noise levels (e.g. DDPM steps 0..T-1) and,
    with ``num_class_labels``, ``labels: (B,)`` class indices (``num_class_labels`` or ``None``
    means no class). Extra keys: ``time_embed``, ``class_embed``, ``*.blocks.{i}.film`` and,
    at ``attention_levels``, ``*.blocks.{i}.attention``.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.head = tag_conv(
            layers.conv(c.spatial_dims, c.widths[0], c.out_channels, 1),
            gain=1.0,
            fan_in=c.widths[0],
        )
        if c.deep_supervision:
            # Heads on decoder levels 1 .. depth-2 (below full resolution).
            self.deep_heads = nn.ModuleList(
                tag_conv(
                    layers.conv(c.spatial_dims, c.widths[i], c.out_channels, 1),
                    gain=1.0,
                    fan_in=c.widths[i],
                )
                for i in range(1, c.depth - 1)
            )
        if c.time_conditioning:
            self.time_embed = TimeEmbedding(c.widths[0], c.embed_dim)
            if c.num_class_labels:
                self.class_embed = ClassEmbedding(c.num_class_labels, c.embed_dim)
        init_weights(self, c.init)

    @property
    def downsample_factor(self) -> int:
        """Total downsampling to the bottleneck, ``2 ** (depth - 1)``."""
        return self.config.downsample_factor

    def output_size(self, input_size: int | Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for an input size (see :func:`unetkit.model.sizes.output_size`)."""
        return sizes.output_size(self.config, input_size)

    def valid_input_sizes(self, low: int = 1, high: int = 1024, axis: int = 0) -> list[int]:
        """Input lengths along ``axis`` that work without padding (all of them in same mode)."""
        return sizes.valid_input_sizes(self.config, low, high, axis)

    def _check_input(self, x: Tensor) -> None:
        c = self.config
        if x.ndim != c.spatial_dims + 2:
            raise ValueError(
                f"input shape {tuple(x.shape)}: a {c.spatial_dims}D U-Net expects "
                f"(batch, channels, {c.spatial_dims} spatial axes)"
            )
        if x.shape[1] != c.in_channels:
            raise ValueError(
                f"input shape {tuple(x.shape)}: expected {c.in_channels} channel(s) on axis 1, "
                f"got {x.shape[1]}"
            )

    def points(self) -> list[Point]:
        """The computation points in the order :meth:`forward_core` runs them, then the deep
        supervision heads (``deep_head``, used by :meth:`forward_deep_supervision` only)."""
        points: list[Point] = []
        if self.config.time_conditioning:
            points.append(Point("time_embed", "embed", "time", 0, self.time_embed))
        if self.config.num_class_labels:
            points.append(Point("class_embed", "embed", "class", 0, self.class_embed))
        for i in range(self.config.depth):
            points += self.encoder.level_points(i)
        for i in reversed(range(len(self.decoder.ups))):
            points += self.decoder.level_points(i)
        points.append(Point("head", "head", "conv", 0, self.head))
        for i, head in enumerate(getattr(self, "deep_heads", ())):
            points.append(Point(f"deep_heads.{i}", "deep_head", "conv", i + 1, head))
        return points

    def _embed(
        self, x: Tensor, t: Tensor | float | None, labels: Tensor | None, step: Step
    ) -> Tensor | None:
        """The time (+ class) embedding ``(B, embed_dim)`` of a conditioned model, else ``None``.

        ``t``: a number or ``(B,)``; ``labels``: ``(B,)`` ints, ``None`` meaning no class.
        """
        c = self.config
        if not c.time_conditioning:
            if t is not None or labels is not None:
                raise ValueError(
                    "t/labels: this U-Net is not time-conditioned (time_conditioning=false); "
                    "call it as model(x)"
                )
            return None
        if t is None:
            raise ValueError(
                "t: this U-Net is time-conditioned (a diffusion denoiser); call it as "
                "model(x, t) with the noise level t"
            )
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(batch) if t.ndim == 0 else t  # (B,)
        if t.shape != (batch,):
            raise ValueError(f"t: expected a number or shape ({batch},), got {tuple(t.shape)}")
        emb = step(Point("time_embed", "embed", "time", 0, self.time_embed), t)  # (B, E)
        if labels is not None and not c.num_class_labels:
            raise ValueError(
                "labels: this U-Net has no class conditioning (num_class_labels=0); drop them"
            )
        if c.num_class_labels:
            if labels is None:
                labels = torch.full((batch,), c.num_class_labels, device=x.device)
            if labels.shape != (batch,):
                raise ValueError(f"labels: expected shape ({batch},), got {tuple(labels.shape)}")
            point = Point("class_embed", "embed", "class", 0, self.class_embed)
            emb = emb + step(point, labels)  # (B, E)
        return emb

    def _walk_levels(self, x: Tensor, step: Step, emb: Tensor | None = None) -> list[Tensor]:
        """Decoder outputs per level, shallow first, of an input that needs no padding."""
        skips = self.encoder(x, step, emb)  # [(B, w_i, *S_i)]
        if len(skips) == 1:
            return skips
        return self.decoder.forward_levels(skips, step, emb)

    def forward_core(
        self,
        x: Tensor,
        step: Step = call,
        t: Tensor | float | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """The network without the input padding and output crop: ``head(decoder(encoder(x)))``.

        ``x: (B, in_channels, *P) -> (B, out_channels, *P_out)`` where, in same mode, ``P`` is a
        multiple of :attr:`downsample_factor` (``P_out = P``) and in valid mode a valid size.
        ``step(point, *inputs)`` computes each point of :meth:`points` (default: its module);
        consumers that run the network another way (int8) pass their own. Free of Python shape
        arithmetic apart from the valid-mode crops, so a trace keeps the axes dynamic.
        ``t``/``labels``: the noise level and classes of a time-conditioned model.
        """
        emb = self._embed(x, t, labels, step)  # (B, E) or None
        levels = self._walk_levels(x, step, emb)
        return step(Point("head", "head", "conv", 0, self.head), levels[0])  # (B, K, *P_out)

    def prepare_input(self, x: Tensor) -> tuple[Tensor, tuple[int, ...] | None]:
        """Check ``x`` and pad it for :meth:`forward_core`; returns the size to crop back to.

        ``x: (B, in_channels, *S) -> (B, in_channels, *P)`` with ``P`` the next multiple of
        :attr:`downsample_factor` in same mode (and the original ``S``); valid mode returns
        ``x`` and ``None``, or raises ``ValueError`` naming the nearest valid sizes.
        """
        self._check_input(x)
        if self.config.padding == "same":
            return pad_to_multiple(x, self.config.downsample_factors)  # (B, C, *P)
        self.output_size(tuple(x.shape[2:]))  # raises with the nearest valid sizes
        return x, None

    def _levels(
        self, x: Tensor, t: Tensor | float | None = None, labels: Tensor | None = None
    ) -> tuple[list[Tensor], tuple[int, ...] | None]:
        """Decoder outputs per level (shallow first) and the size to crop back to (same mode)."""
        x, original = self.prepare_input(x)
        emb = self._embed(x, t, labels, call)
        return self._walk_levels(x, call, emb), original

    def forward(
        self, x: Tensor, t: Tensor | float | None = None, labels: Tensor | None = None
    ) -> Tensor:
        x, original = self.prepare_input(x)  # (B, C, *P)
        y = self.forward_core(x, call, t, labels)  # (B, out_channels, *P_out)
        return y if original is None else crop_to(y, original)

    def forward_deep_supervision(
        self, x: Tensor, t: Tensor | float | None = None, labels: Tensor | None = None
    ) -> list[Tensor]:
        """Outputs at every decoder level, full resolution first.

        ``x: (B, in_channels, *S) -> [(B, out_channels, *S), (B, out_channels, *S/2), ...]``
        (``depth - 1`` tensors; in same mode level ``i`` has size ``ceil(S / 2**i)``, per axis
        with ``strides``). Needs
        ``deep_supervision=True``; the first element equals ``forward(x)``.
        """
        if not self.config.deep_supervision:
            raise ValueError(
                "forward_deep_supervision: this model was built with deep_supervision=False"
            )
        levels, original = self._levels(x, t, labels)
        outputs = [self.head(levels[0])]
        outputs += [head(feat) for head, feat in zip(self.deep_heads, levels[1:], strict=True)]
        if original is None:
            return outputs
        return [
            crop_to(y, sizes.level_size(self.config, original, i)) for i, y in enumerate(outputs)
        ]
