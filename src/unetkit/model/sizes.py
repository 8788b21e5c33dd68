"""Size arithmetic: output sizes and the valid input sizes of unpadded U-Nets (P6, P7).

In ``same`` mode every size works (the model pads to a multiple of ``2 ** (depth - 1)`` and crops
back), so the output size equals the input size. In ``valid`` mode each convolution removes
``kernel_size - 1`` pixels, every pooled map must have an even size, and the output is smaller
than the input: the paper's 572 gives 388.
"""

from __future__ import annotations

from collections.abc import Sequence

from unetkit.model.config import UNetConfig


def _axis_output(config: UNetConfig, n: int) -> int | None:
    """Output length along one axis for input length ``n``, or ``None`` if ``n`` cannot work."""
    if config.padding == "same":
        return n if n >= 1 else None
    shrink = config.convs_per_block * (config.kernel_size - 1)
    s = n
    skips: list[int] = []
    for level in range(config.depth):
        s -= shrink * config.blocks_at(level)
        if s < 1:
            return None
        skips.append(s)
        if level < config.depth - 1:
            if s % 2:
                return None
            s //= 2
    for level in reversed(range(config.depth - 1)):
        s *= 2
        if s > skips[level]:
            return None
        s -= shrink
        if s < 1:
            return None
    return s


def axis_is_valid(config: UNetConfig, n: int) -> bool:
    """Whether an input of length ``n`` along one axis works without padding."""
    return _axis_output(config, n) is not None


def valid_input_sizes(config: UNetConfig, low: int = 1, high: int = 1024) -> list[int]:
    """Input lengths in ``[low, high]`` that work along one axis (every length in same mode)."""
    return [n for n in range(max(1, low), high + 1) if _axis_output(config, n) is not None]


def nearest_valid_sizes(config: UNetConfig, n: int) -> tuple[int | None, int | None]:
    """The nearest valid input lengths at or below and at or above ``n`` (``None`` if none)."""
    step = config.downsample_factor
    below = next((m for m in range(n, 0, -1) if axis_is_valid(config, m)), None)
    above = next(
        (m for m in range(max(n, 1), n + 2 * step + 64 * config.depth) if axis_is_valid(config, m)),
        None,
    )
    return below, above


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
        o = _axis_output(config, n)
        if o is None:
            below, above = nearest_valid_sizes(config, n)
            options = " or ".join(str(m) for m in (below, above) if m is not None) or "none"
            raise ValueError(
                f"input size {n} along spatial axis {axis} does not fit this valid-padding "
                f"U-Net (depth {config.depth}); the nearest valid sizes are {options}. Crop or "
                f"pad to one of them, predict with overlap-tiles, or use padding='same'"
            )
        out.append(o)
    return tuple(out)


def receptive_field(config: UNetConfig) -> int:
    """Receptive field (pixels along one axis) of an output pixel, through the bottleneck.

    Counts each k-wide convolution as ``k - 1`` steps at its level's stride, a 2x2 pool or
    strided convolution as one step, a stride-2 transposed 2x2 convolution as none (each output
    sees one input position), and linear interpolation as one step at the coarser level.
    """
    rf, jump = 1, 1
    conv = config.convs_per_block * (config.kernel_size - 1)
    for level in range(config.depth):
        rf += conv * config.blocks_at(level) * jump
        if level < config.depth - 1:
            rf += jump  # 2-wide pool / strided conv
            jump *= 2
    for _level in reversed(range(config.depth - 1)):
        if config.up == "interp":
            rf += jump
        jump //= 2
        rf += conv * jump
    return rf
