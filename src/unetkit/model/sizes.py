"""Size arithmetic: output sizes and the valid input sizes of unpadded U-Nets (P6, P7).

In ``same`` mode every size works (the model pads to a multiple of ``2 ** (depth - 1)`` and crops
back), so the output size equals the input size. In ``valid`` mode each convolution removes
``kernel_size - 1`` pixels, every pooled map must have an even size, and the output is smaller
than the input: the paper's 572 gives 388.

With ``UNetConfig.strides`` / ``kernel_sizes`` (anisotropic models) every function takes the
spatial ``axis`` it is asked about: each axis has its own kernels and pooling factors. Isotropic
models give the same answer on every axis.
"""

from __future__ import annotations

from collections.abc import Sequence

from unetkit.model.config import UNetConfig


def _shrink(config: UNetConfig, level: int, axis: int) -> int:
    """Pixels one block of ``level`` removes along ``axis`` in valid mode."""
    return config.convs_per_block * (config.kernel_at(level)[axis] - 1)


def _axis_output(config: UNetConfig, n: int, axis: int = 0) -> int | None:
    """Output length along ``axis`` for input length ``n``, or ``None`` if ``n`` cannot work."""
    if config.padding == "same":
        return n if n >= 1 else None
    s = n
    skips: list[int] = []
    for level in range(config.depth):
        s -= _shrink(config, level, axis) * config.blocks_at(level)
        if s < 1:
            return None
        skips.append(s)
        if level < config.depth - 1:
            f = config.stride_at(level)[axis]
            if s % f:
                return None
            s //= f
    for level in reversed(range(config.depth - 1)):
        s *= config.stride_at(level)[axis]
        if s > skips[level]:
            return None
        s -= _shrink(config, level, axis)
        if s < 1:
            return None
    return s


def axis_is_valid(config: UNetConfig, n: int, axis: int = 0) -> bool:
    """Whether an input of length ``n`` along ``axis`` works without padding."""
    return _axis_output(config, n, axis) is not None


def valid_input_sizes(
    config: UNetConfig, low: int = 1, high: int = 1024, axis: int = 0
) -> list[int]:
    """Input lengths in ``[low, high]`` that work along ``axis`` (every length in same mode)."""
    return [n for n in range(max(1, low), high + 1) if _axis_output(config, n, axis) is not None]


def nearest_valid_sizes(config: UNetConfig, n: int, axis: int = 0) -> tuple[int | None, int | None]:
    """The nearest valid input lengths at or below and at or above ``n`` along ``axis``."""
    step = config.downsample_factors[axis]
    below = next((m for m in range(n, 0, -1) if axis_is_valid(config, m, axis)), None)
    above = next(
        (
            m
            for m in range(max(n, 1), n + 2 * step + 64 * config.depth)
            if axis_is_valid(config, m, axis)
        ),
        None,
    )
    return below, above


def level_size(config: UNetConfig, size: Sequence[int], level: int) -> tuple[int, ...]:
    """Same-mode spatial size at ``level``: ``ceil(S / prod(strides[:level]))`` per axis."""
    out = [int(n) for n in size]
    for i in range(level):
        out = [-(-n // f) for n, f in zip(out, config.stride_at(i), strict=True)]
    return tuple(out)


def output_size(config: UNetConfig, input_size: int | Sequence[int]) -> tuple[int, ...]:
    """Spatial output size for ``input_size`` (an int for every axis, or one per axis).

    Raises ``ValueError`` naming the axis and the nearest valid sizes when a valid-mode input
    cannot work.
    """
    sizes = (
        (int(input_size),) * config.spatial_dims
        if isinstance(input_size, int)
        else tuple(int(s) for s in input_size)
    )
    if len(sizes) != config.spatial_dims:
        raise ValueError(
            f"input size {sizes}: expected {config.spatial_dims} spatial size(s) for a "
            f"{config.spatial_dims}D model"
        )
    out: list[int] = []
    for axis, n in enumerate(sizes):
        o = _axis_output(config, n, axis)
        if o is None:
            below, above = nearest_valid_sizes(config, n, axis)
            options = " or ".join(str(m) for m in (below, above) if m is not None) or "none"
            raise ValueError(
                f"input size {n} along spatial axis {axis} does not fit this valid-padding "
                f"U-Net (depth {config.depth}); the nearest valid sizes are {options}. Crop or "
                f"pad to one of them, predict with overlap-tiles, or use padding='same'"
            )
        out.append(o)
    return tuple(out)


def receptive_field(config: UNetConfig, axis: int = 0) -> int:
    """Receptive field (pixels along ``axis``) of an output pixel, through the bottleneck.

    Counts each k-wide convolution as ``k - 1`` steps at its level's stride, a 2x2 pool or
    strided convolution as one step, a stride-2 transposed 2x2 convolution as none (each output
    sees one input position), and linear interpolation as one step at the coarser level.
    """
    rf, jump = 1, 1
    for level in range(config.depth):
        rf += _shrink(config, level, axis) * config.blocks_at(level) * jump
        if level < config.depth - 1:
            f = config.stride_at(level)[axis]
            rf += (f - 1) * jump  # f-wide pool / strided conv
            jump *= f
    for level in reversed(range(config.depth - 1)):
        f = config.stride_at(level)[axis]
        if config.up == "interp" and f > 1:
            rf += jump
        jump //= f
        rf += _shrink(config, level, axis) * jump
    return rf
