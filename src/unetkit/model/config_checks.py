"""The checks of :class:`unetkit.model.config.UNetConfig` for anisotropy and conditioning.

Kept apart so the config module stays a readable list of fields; each function raises
``ValueError`` naming the field, what it expected and an example.
"""

from __future__ import annotations

from typing import Any


def check_anisotropy(config: Any) -> None:
    """Refuse ``strides`` / ``kernel_sizes`` tables of the wrong shape, naming the field."""
    d = config.spatial_dims
    for name, rows, odd in (
        ("strides", config.strides, False),
        ("kernel_sizes", config.kernel_sizes, True),
    ):
        if rows is None:
            continue
        want = config.depth - 1 if name == "strides" else config.depth
        example = [[1, 2, 2], [2, 2, 2]] if name == "strides" else [[1, 3, 3], [3, 3, 3]]
        ok = (
            isinstance(rows, tuple)
            and len(rows) == want
            and all(
                isinstance(row, tuple)
                and len(row) == d
                and all(
                    isinstance(v, int)
                    and not isinstance(v, bool)
                    and v >= 1
                    and (v % 2 == 1 if odd else True)
                    for v in row
                )
                for row in rows
            )
        )
        if not ok:
            what = "odd positive integers" if odd else "positive integers"
            raise ValueError(
                f"{name}: expected {want} entries (one per "
                f"{'level change' if name == 'strides' else 'level'}), each {d} {what} "
                f"(one per spatial axis) or one for every axis, e.g. {example} for a 3D "
                f"model; or null for the isotropic default; got {rows!r}"
            )


def check_conditioning(config: Any) -> None:
    """Refuse conditioning settings that cannot build (time, class, attention)."""
    if not isinstance(config.time_conditioning, bool):
        raise ValueError(
            f"time_conditioning: expected true or false, got {config.time_conditioning!r}"
        )
    for name in ("num_class_labels", "time_embed_dim"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    if config.num_class_labels and not config.time_conditioning:
        raise ValueError(
            "num_class_labels: class conditioning is added to the time embedding; set "
            "time_conditioning=true too (or num_class_labels=0)"
        )
    levels = config.attention_levels
    if not isinstance(levels, tuple) or any(
        not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(config.widths)
        for i in levels
    ):
        raise ValueError(
            f"attention_levels: expected resolution levels in 0..{len(config.widths) - 1} "
            f"(0 is full resolution), e.g. [{len(config.widths) - 1}], got {levels!r}"
        )


__all__ = ["check_anisotropy", "check_conditioning"]
