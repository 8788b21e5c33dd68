"""The one table of model cases, shared by every consumer's tests (STYLE P13, P17).

A case is a set of :class:`UNetConfig` options on a small base model, run in 1D, 2D and 3D on
odd input sizes. The model, folding, int8, export and model-file tests all draw from
:data:`CASES` through :func:`make_model` and :func:`make_input`, and every preset is covered
through :data:`PRESETS` (``list_models()``), so a new option or preset is tested everywhere by
adding one line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from unetkit.model import UNet, UNetConfig, create_model, list_models

BASE: dict[str, Any] = {"widths": (4, 8, 16), "in_channels": 2, "out_channels": 3}
OPTIONS: list[dict[str, Any]] = [
    {},
    {"down": "avgpool"},
    {"down": "strided"},
    {"up": "interp"},
    {"fusion": "concat_1x1"},
    {"fusion": "add"},
    {"fusion": "none"},
    {"norm": "instance"},
    {"norm": {"type": "group", "groups": 2}},
    {"norm": "none", "act": "leaky_relu"},
    {"norm_placement": "before_concat"},
    {"norm_placement": "before_concat", "fusion": "add", "norm": "group"},
    {"norm_placement": "before_concat", "fusion": "concat_1x1"},
    {"block": "residual"},
    {"act": "gelu", "dropout": 0.2},
    {"act": {"type": "leaky_relu", "negative_slope": 0.2}, "block": "residual", "up": "interp"},
    {"kernel_size": 5, "convs_per_block": 1},
    {"checkpointing": "all", "deep_supervision": True},
    {"encoder_blocks": (1, 2, 3)},
    {"encoder_blocks": (2, 1, 2), "block": "residual", "down": "strided"},
    {"padding": "valid"},
    {"padding": "valid", "block": "residual", "up": "interp", "encoder_blocks": (1, 2, 1)},
]
DIMS = (1, 2, 3)
#: Odd sizes, not multiples of the downsample factor: they exercise the pad-and-crop.
ODD = {1: (37,), 2: (13, 22), 3: (7, 9, 11)}
PRESETS = list_models()
#: Presets too large to build and run in every consumer's test (covered by arithmetic tests).
LARGE_PRESETS = ("unet2d_ronneberger2015", "unet2d_classic", "unet3d_resenc")


def option_id(options: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "default"


@dataclass(frozen=True)
class Case:
    """One row of the table: ``options`` on :data:`BASE` in ``spatial_dims`` dimensions."""

    spatial_dims: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.spatial_dims}d-{option_id(self.options)}"

    def config(self, **extra: Any) -> UNetConfig:
        return UNetConfig(spatial_dims=self.spatial_dims, **{**BASE, **self.options, **extra})

    def has(self, **wanted: Any) -> bool:
        """Whether the case's config has every ``field=value`` in ``wanted``."""
        c = self.config()
        return all(getattr(c, k) == v for k, v in wanted.items())


#: Anisotropic models (per-level, per-axis ``strides`` and ``kernel_sizes``): one spatial_dims
#: each, since the per-axis tuples fix the dimensionality. The first axis is the coarse one.
STRIDES_3D = ((1, 2, 2), (2, 2, 2))
KERNELS_3D = ((1, 3, 3), (3, 3, 3), (3, 3, 3))
ANISOTROPIC: list[tuple[int, dict[str, Any]]] = [
    (2, {"strides": ((1, 2), (2, 2)), "kernel_sizes": ((1, 3), (3, 3), (3, 3))}),
    (3, {"strides": STRIDES_3D, "kernel_sizes": KERNELS_3D}),
    (3, {"strides": STRIDES_3D, "down": "strided", "up": "interp", "block": "residual"}),
    (3, {"strides": STRIDES_3D, "kernel_sizes": KERNELS_3D, "padding": "valid"}),
]

CASES = [Case(d, o) for o in OPTIONS for d in DIMS] + [Case(d, o) for d, o in ANISOTROPIC]


def cases(*, dims: tuple[int, ...] = DIMS, **wanted: Any) -> list[Any]:
    """``pytest.param`` rows of :data:`CASES` in ``dims`` whose config has ``wanted``."""
    return [pytest.param(c, id=c.id) for c in CASES if c.spatial_dims in dims and c.has(**wanted)]


def make_model(case: Case | UNetConfig | str, *, seed: int = 0, settled: bool = False) -> UNet:
    """The model of a case, a config or a preset name, built from ``seed``.

    ``settled``: run three training-mode forwards first, so batch norms hold running statistics
    of real passes (what folding and int8 use), then return it in eval mode.
    """
    torch.manual_seed(seed)
    if isinstance(case, str):
        model = create_model(case)
    else:
        model = UNet(case if isinstance(case, UNetConfig) else case.config())
    if settled:
        model.train()
        with torch.no_grad():
            for k in range(3):
                model(make_input(model, seed=100 + k))
        model.eval()
    return model


def input_size(model: UNet) -> tuple[int, ...]:
    """An odd spatial size the model accepts (valid mode: the smallest valid size >= 20/12)."""
    c = model.config
    if c.padding == "valid":
        low = 20 if c.spatial_dims < 3 else 12
        return tuple(model.valid_input_sizes(low, 400, a)[0] for a in range(c.spatial_dims))
    if c.depth > 3:  # presets: big enough for instance norm at the bottleneck
        return tuple(2 * model.downsample_factor + 3 for _ in range(c.spatial_dims))
    return ODD[c.spatial_dims]


def make_input(
    model: UNet, *, batch: int = 2, seed: int = 1, size: tuple[int, ...] | None = None
) -> torch.Tensor:
    """A random ``(batch, in_channels, *size)`` input for ``model``, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, model.config.in_channels, *(size or input_size(model)))
    return torch.randn(shape, generator=g)
