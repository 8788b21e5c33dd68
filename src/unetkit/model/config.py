"""`UNetConfig`: the frozen dataclass that fully determines a U-Net.

Why this module exists: the network's config lives inside ``model/`` so that ``model/`` imports
nothing above it; a training run's config (data, optimisation) is :mod:`unetkit.config`, and
the dataclass <-> YAML machinery both use is :mod:`unetkit.configtools`.

Field names are public API and are the one vocabulary used everywhere (CLI overrides, YAML,
saved models). Closed choices are ``Literal`` types, checked in ``__post_init__`` with a message
that names the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from unetkit.model.config_checks import check_anisotropy, check_conditioning

Padding = Literal["same", "valid"]
Down = Literal["maxpool", "avgpool", "strided"]
Up = Literal["transpose", "interp"]
Fusion = Literal["concat", "concat_1x1", "add", "none"]
NormPlacement = Literal["after_concat", "before_concat"]
BlockKind = Literal["plain", "residual"]
Init = Literal["kaiming", "default"]
Checkpointing = Literal["off", "encoder", "all"]

NORMS = ("batch", "instance", "group", "none")
ACTS = ("relu", "leaky_relu", "gelu", "silu")

# A norm or activation is a name, or a mapping {"type": name, **kwargs}.
LayerSpec = str | dict[str, Any]



def spec_name(spec: LayerSpec) -> str:
    """The layer type of a norm/activation spec (``"group"`` for ``{"type": "group", ...}``)."""
    if isinstance(spec, str):
        return spec
    return str(spec.get("type", ""))


def spec_kwargs(spec: LayerSpec) -> dict[str, Any]:
    """The keyword arguments of a norm/activation spec (empty for a bare name)."""
    if isinstance(spec, str):
        return {}
    return {k: v for k, v in spec.items() if k != "type"}


# The options each norm/activation type accepts besides "type", with their kind of value.
SPEC_OPTIONS: dict[str, dict[str, str]] = {
    "batch": {
        "eps": "number",
        "momentum": "number",
        "affine": "bool",
        "track_running_stats": "bool",
    },
    "instance": {
        "eps": "number",
        "momentum": "number",
        "affine": "bool",
        "track_running_stats": "bool",
    },
    "group": {"groups": "int", "eps": "number", "affine": "bool"},
    "none": {},
    "relu": {"inplace": "bool"},
    "leaky_relu": {"negative_slope": "number", "inplace": "bool"},
    "gelu": {"approximate": "approximate"},
    "silu": {"inplace": "bool"},
}


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


_OPTION_CHECKS = {
    "number": _is_finite_number,
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "approximate": lambda v: isinstance(v, str) and v in ("none", "tanh"),
}


def _check_spec_options(field: str, spec: LayerSpec) -> None:
    """Raise ``ValueError`` naming ``field.option`` for an option the layer does not take."""
    allowed = SPEC_OPTIONS.get(spec_name(spec), {})
    for key, value in spec_kwargs(spec).items():
        kind = allowed.get(key)
        if kind is None:
            known = ", ".join(sorted(allowed)) or "none"
            raise ValueError(
                f"{field}.{key}: not an option of {field} {spec_name(spec)!r}; known: {known}"
            )
        if not _OPTION_CHECKS[kind](value):
            expected = {
                "number": "a finite number",
                "bool": "true or false",
                "int": "a positive integer",
                "approximate": "'none' or 'tanh'",
            }[kind]
            raise ValueError(f"{field}.{key}: expected {expected}, got {value!r}")


def _per_axis_table(rows: Any, spatial_dims: int) -> Any:
    """``strides``/``kernel_sizes`` as a tuple of per-axis tuples (an int entry: every axis).

    Anything that is not a sequence of ints/sequences is returned as is for ``validate`` to name.
    """
    out: list[Any] = []
    for row in rows:
        if isinstance(row, int) and not isinstance(row, bool) and spatial_dims in (1, 2, 3):
            out.append((row,) * spatial_dims)
        elif isinstance(row, list | tuple):
            out.append(tuple(row))
        else:
            return tuple(rows)
    return tuple(out)


def _check_choice(field: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")


@dataclass(frozen=True)
class UNetConfig:
    """Everything that defines a U-Net; the model keeps it and every saved model carries it.

    Attributes:
        spatial_dims: 1, 2 or 3 (signals, images, volumes).
        in_channels: channels of the input, e.g. 1 for grey, 3 for RGB.
        out_channels: channels of the output, e.g. the number of classes.
        widths: feature channels per level, shallow first; the last is the bottleneck.
            ``len(widths)`` is the depth (number of resolution levels).
        kernel_size: odd convolution kernel size of the blocks.
        convs_per_block: convolutions in each encoder and decoder block.
        padding: ``"same"`` (p = (k-1)//2; any input size works, output size = input size) or
            ``"valid"`` (unpadded, as in the 2015 paper; the skip is centre-cropped).
        down: ``"maxpool"``, ``"avgpool"`` (2x2) or ``"strided"`` (a 2x2 convolution, stride 2).
        up: ``"transpose"`` (2x2 transposed convolution, stride 2) or ``"interp"``
            ((bi/tri)linear interpolation by 2, then a 1x1 convolution).
        fusion: how the skip joins the upsampled map: ``"concat"``, ``"concat_1x1"`` (concat,
            then a 1x1 convolution from 2C to C), ``"add"``, or ``"none"`` (no skips).
        norm: ``"batch"``, ``"instance"``, ``"group"``, ``"none"``, or ``{"type": ..., **kwargs}``.
        norm_placement: ``"after_concat"`` normalises the joint (fused) map; ``"before_concat"``
            normalises each branch before fusion. No effect with ``norm="none"`` or
            ``fusion="none"``.
        act: ``"relu"``, ``"leaky_relu"``, ``"gelu"``, ``"silu"`` or ``{"type": ..., **kwargs}``.
        block: ``"plain"`` (conv-norm-act repeated) or ``"residual"`` (with an identity or 1x1
            shortcut around the block).
        encoder_blocks: blocks per encoder level, shallow first (one entry per level), e.g.
            ``(1, 3, 4, 6)`` as in nnU-Net's residual encoders: more blocks where maps are
            small. ``None`` (the default) means one block per level. The decoder always has one
            block per level.
        dropout: dropout probability at the end of the contracting path (the bottleneck block),
            as in the paper. 0 disables it.
        init: ``"kaiming"`` (He normal from each convolution's true fan-in, including the 2C
            input channels after a concat and the stride of transposed convolutions) or
            ``"default"`` (PyTorch's own initialisation).
        checkpointing: gradient checkpointing: ``"off"``; ``"encoder"`` (recompute encoder blocks
            in the backward pass, keeping only their outputs, the skips); ``"all"`` (decoder
            blocks too). ``True``/``False`` mean ``"encoder"``/``"off"``.
        deep_supervision: add 1x1 heads on the decoder levels below full resolution, returned
            by :meth:`UNet.forward_deep_supervision`.
        strides: anisotropy: the down-sampling factor of each level change, per spatial axis,
            shallow first (``depth - 1`` entries, each one integer per axis or one integer for
            every axis), e.g. ``((1, 2, 2), (1, 2, 2), (2, 2, 2))`` for a volume whose first
            axis is several times coarser: it is not pooled until the in-plane resolution
            catches up. The decoder up-samples by the same factors. ``None`` (the default): 2
            on every axis.
        kernel_sizes: anisotropy: the odd convolution kernel of each level's blocks, per spatial
            axis (``depth`` entries, each one integer per axis or one for every axis), e.g.
            ``((1, 3, 3), (1, 3, 3), (3, 3, 3))``. The decoder block of a level uses that level's
            kernel. ``None`` (the default): ``kernel_size`` everywhere.
        time_conditioning: condition every conv block on a noise level ``t`` (the denoiser of a
            diffusion model): a sinusoidal embedding of ``t`` through a small MLP gives a
            per-channel scale and shift (FiLM) inside each block. ``forward(x, t)`` then needs
            ``t``. ``False`` (the default) builds exactly the plain U-Net.
        num_class_labels: with ``time_conditioning``, the number of classes a learned class
            embedding (added to the time embedding) knows; one more, the *null* label, serves
            classifier-free guidance. 0 (the default): no class conditioning.
        attention_levels: resolution levels (0 is full resolution) whose encoder and decoder
            blocks end with multi-head self-attention, e.g. ``(2, 3)`` for the two lowest of
            four levels. Empty (the default): none.
        time_embed_dim: width of the time (and class) embedding; 0 means ``4 * widths[0]``.
    """

    spatial_dims: int = 2
    in_channels: int = 1
    out_channels: int = 2
    widths: tuple[int, ...] = (32, 64, 128, 256)
    kernel_size: int = 3
    convs_per_block: int = 2
    padding: Padding = "same"
    down: Down = "maxpool"
    up: Up = "transpose"
    fusion: Fusion = "concat"
    norm: LayerSpec = "batch"
    norm_placement: NormPlacement = "after_concat"
    act: LayerSpec = "relu"
    block: BlockKind = "plain"
    encoder_blocks: tuple[int, ...] | None = None
    dropout: float = 0.0
    init: Init = "kaiming"
    checkpointing: Checkpointing | bool = "off"
    deep_supervision: bool = False
    strides: tuple[tuple[int, ...], ...] | None = None
    kernel_sizes: tuple[tuple[int, ...], ...] | None = None
    time_conditioning: bool = False
    num_class_labels: int = 0
    attention_levels: tuple[int, ...] = ()
    time_embed_dim: int = 0

    def __post_init__(self) -> None:
        if self.checkpointing is True:
            object.__setattr__(self, "checkpointing", "encoder")
        elif self.checkpointing is False:
            object.__setattr__(self, "checkpointing", "off")
        object.__setattr__(self, "widths", tuple(self.widths))
        if isinstance(self.encoder_blocks, list | tuple):
            object.__setattr__(self, "encoder_blocks", tuple(self.encoder_blocks))
        for name in ("strides", "kernel_sizes"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                object.__setattr__(self, name, _per_axis_table(value, self.spatial_dims))
        if isinstance(self.attention_levels, list):
            object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        if isinstance(self.norm, dict):
            object.__setattr__(self, "norm", dict(self.norm))
        if isinstance(self.act, dict):
            object.__setattr__(self, "act", dict(self.act))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field whose value cannot work."""
        if self.spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims: expected 1, 2 or 3, got {self.spatial_dims!r}")
        for name in ("in_channels", "out_channels", "convs_per_block"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if len(self.widths) < 1 or any(
            not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in self.widths
        ):
            raise ValueError(
                f"widths: expected one positive integer per level, e.g. (32, 64, 128, 256), "
                f"got {self.widths!r}"
            )
        if (
            not isinstance(self.kernel_size, int)
            or self.kernel_size < 1
            or self.kernel_size % 2 == 0
        ):
            raise ValueError(
                f"kernel_size: expected an odd positive integer (3, 5, ...) so that 'same' "
                f"padding is symmetric and 'valid' crops are exact, got {self.kernel_size!r}"
            )
        for name, typ in (
            ("padding", Padding),
            ("down", Down),
            ("up", Up),
            ("fusion", Fusion),
            ("norm_placement", NormPlacement),
            ("block", BlockKind),
            ("init", Init),
            ("checkpointing", Checkpointing),
        ):
            _check_choice(name, getattr(self, name), get_args(typ))
        self._validate_encoder_blocks()
        check_anisotropy(self)
        if not isinstance(self.norm, str | dict):
            raise ValueError(f"norm: expected a name or a mapping, got {self.norm!r}")
        _check_choice("norm", spec_name(self.norm), NORMS)
        if not isinstance(self.act, str | dict):
            raise ValueError(f"act: expected a name or a mapping, got {self.act!r}")
        _check_choice("act", spec_name(self.act), ACTS)
        _check_spec_options("norm", self.norm)
        _check_spec_options("act", self.act)
        if not isinstance(self.dropout, int | float) or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout!r}")
        if self.deep_supervision and len(self.widths) < 3:
            raise ValueError(
                "deep_supervision: needs at least three levels in widths (a decoder level "
                "below full resolution to put a head on)"
            )
        check_conditioning(self)

    def _validate_encoder_blocks(self) -> None:
        blocks = self.encoder_blocks
        if blocks is None:
            return
        if (
            not isinstance(blocks, tuple)
            or len(blocks) != len(self.widths)
            or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in blocks)
        ):
            raise ValueError(
                f"encoder_blocks: expected one positive integer per level of widths "
                f"({len(self.widths)} levels), e.g. {[1, *[2] * (len(self.widths) - 1)]}, or "
                f"null for one block per level; got {blocks!r}"
            )

    def stride_at(self, i: int) -> tuple[int, ...]:
        """Per-axis factor of the down-sampling from level ``i`` into level ``i + 1``."""
        if self.strides is None:
            return (2,) * self.spatial_dims
        return self.strides[i]

    def kernel_at(self, level: int) -> tuple[int, ...]:
        """Per-axis convolution kernel of level ``level``'s blocks."""
        if self.kernel_sizes is None:
            return (self.kernel_size,) * self.spatial_dims
        return self.kernel_sizes[level]

    @property
    def anisotropic(self) -> bool:
        """Whether ``strides`` or ``kernel_sizes`` set per-level, per-axis values."""
        return self.strides is not None or self.kernel_sizes is not None

    @property
    def downsample_factors(self) -> tuple[int, ...]:
        """Total downsampling between the input and the bottleneck, per spatial axis."""
        out = [1] * self.spatial_dims
        for i in range(self.depth - 1):
            out = [a * b for a, b in zip(out, self.stride_at(i), strict=True)]
        return tuple(out)

    @property
    def embed_dim(self) -> int:
        """Width of the time/class embedding (``time_embed_dim``, or ``4 * widths[0]``)."""
        return self.time_embed_dim or 4 * self.widths[0]

    def blocks_at(self, level: int) -> int:
        """Number of blocks of encoder level ``level`` (1 unless ``encoder_blocks`` says more)."""
        return 1 if self.encoder_blocks is None else self.encoder_blocks[level]

    @property
    def depth(self) -> int:
        """Number of resolution levels (``len(widths)``); the input is halved depth-1 times."""
        return len(self.widths)

    @property
    def downsample_factor(self) -> int:
        """Total downsampling between the input and the bottleneck, ``2 ** (depth - 1)``.

        With ``strides``, the least common multiple of :attr:`downsample_factors` (a size that
        is a multiple of it works on every axis); per-axis code uses ``downsample_factors``.
        """
        if self.strides is None:
            return 2 ** (len(self.widths) - 1)
        return math.lcm(*self.downsample_factors)

    def replace(self, **changes: Any) -> UNetConfig:
        """A copy with some fields changed (validated again); ``None`` values are dropped."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
