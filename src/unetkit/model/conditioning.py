"""Conditioning of the U-Net's blocks on a noise level (and a class): the denoiser of diffusion.

Why this module exists: a diffusion model is the same U-Net told *how noisy* its input is. The
noise level ``t`` becomes a sinusoidal embedding, a small MLP maps it to an embedding ``e``
(optionally plus a learned class embedding), and every conv block turns ``e`` into a per-channel
scale and shift (FiLM) of its first convolution's normalised output. Low-resolution levels may
add self-attention after their block. Nothing here exists in a model built with
``time_conditioning=False`` and no ``attention_levels``, so such a model is exactly the plain
U-Net (same state-dict keys, same outputs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.model import layers


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sines and cosines of ``t`` at ``dim // 2`` geometric frequencies.

    ``t: (B,) float or int -> (B, dim)``; frequencies run from 1 to ``1 / max_period``, so noise
    levels from 0 to about 1000 map to distinct, smoothly varying codes. An odd ``dim`` gets a
    trailing zero column.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # (half,)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2 half)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """``t -> sinusoidal(t, base) -> linear -> SiLU -> linear``; ``(B,) -> (B, embed_dim)``."""

    def __init__(self, base_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(
            nn.Linear(base_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.base_dim))  # (B, embed_dim)


class ClassEmbedding(nn.Module):
    """``labels -> embedding``; ``(B,) int in [0, num_classes] -> (B, embed_dim)``.

    Index ``num_classes`` is the learned *null* label: classifier-free guidance trains with some
    labels replaced by it (label dropout) and samples with both the label and the null label.
    """

    def __init__(self, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, embed_dim)

    def forward(self, labels: Tensor) -> Tensor:
        if labels.dtype.is_floating_point:
            raise ValueError(f"labels: expected integer class indices, got {labels.dtype}")
        checkable = labels.device.type != "meta" and labels.numel() > 0
        if checkable and (int(labels.min()) < 0 or int(labels.max()) > self.num_classes):
            raise ValueError(
                f"labels: expected class indices in 0..{self.num_classes - 1} (or "
                f"{self.num_classes} for no class), got {labels.min().item()}.."
                f"{labels.max().item()}"
            )
        return self.table(labels.long())  # (B, embed_dim)


class FiLM(nn.Module):
    """``e -> SiLU -> linear -> (scale, shift)``; ``(B, embed_dim) -> 2 x (B, C, 1, ...)``.

    Applied as ``h * (1 + scale) + shift``. The linear layer starts at zero, so a freshly built
    conditioned block computes exactly what the unconditioned block computes.
    """

    def __init__(self, embed_dim: int, channels: int, spatial_dims: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.proj = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        ss = self.proj(F.silu(emb))  # (B, 2C)
        ss = ss.reshape(*ss.shape, *([1] * self.spatial_dims))  # (B, 2C, 1, ...)
        scale, shift = ss.chunk(2, dim=1)
        return scale, shift


class SelfAttention(nn.Module):
    """``x + proj(attention(qkv(norm(x))))`` over all positions; ``(B, C, *S) -> (B, C, *S)``.

    Multi-head dot-product attention across the flattened spatial axes (cost grows with the
    square of the number of positions: meant for the low-resolution levels). ``proj`` starts at
    zero, so the block starts as the identity.
    """

    def __init__(self, spatial_dims: int, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = math.gcd(heads, channels) or 1
        self.norm = layers.norm({"type": "group", "groups": 8}, spatial_dims, channels)
        self.qkv = layers.conv(spatial_dims, channels, 3 * channels, 1)
        self.proj = layers.conv(spatial_dims, channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, -1)  # N = prod S
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, h, N, C/h)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, C/h)
        y = y.transpose(-1, -2).reshape(x.shape)  # (B, C, *S)
        return x + self.proj(y)
