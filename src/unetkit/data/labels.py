"""Whether a mask's values are plausible class labels: the checks behind ``check-data``.

A class map holds labels 0..K-1 (0 = background). Refused, each naming the file and values:
negative labels; anti-aliased or JPEG-compressed 0/255 masks; intensity images (more than
:data:`MAX_DISTINCT_LABELS` distinct values); sparse huge labels such as 0/65535 (a binary mask
saved at 16 bits); labels outside a given ``num_classes``. A clean 0/255 mask is read as 0/1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_DISTINCT_LABELS = 64  # more distinct values than this in a mask looks like an image
_SHOW = 8  # how many values or files to name in one message


def show_values(values: np.ndarray) -> str:
    """The first few of ``values`` (and how many there are) for a message."""
    shown = ", ".join(str(int(v)) for v in values[:_SHOW])
    return shown + (f", ... ({len(values)} values)" if len(values) > _SHOW else "")


def _looks_lossy(labels: np.ndarray, counts: np.ndarray, num_classes: int | None) -> bool:
    """True for a 0/255 mask blurred by JPEG or anti-aliasing (sorted unique ``labels``).

    Most pixels are within 16 of 0 or 255 and some values lie in 128..254 (near white, not
    white). A mask with 255 as an "ignore" label and small classes is not flagged, nor one
    whose labels all fit a given ``num_classes``.
    """
    if labels.size <= 2 or not 128 <= labels[-1] <= 255:
        return False
    if num_classes is not None and labels[-1] < num_classes:
        return False
    near_white = (labels >= 128) & (labels < 255)
    near_ends = (labels <= 16) | (labels >= 255 - 16)
    return bool(near_white.any()) and counts[near_ends].sum() >= 0.9 * counts.sum()


def _sparse_large(labels: np.ndarray) -> bool:
    """Labels that no class map has: a maximum of 256 or more, over 4x the values used."""
    return bool(labels.size) and labels[-1] >= 256 and labels[-1] + 1 > 4 * labels.size


def check_mask_values(
    path: Path, mask: np.ndarray, num_classes: int | None, problems: list[str]
) -> tuple[np.ndarray, bool]:
    """Append to ``problems`` what is wrong with the labels of the mask read from ``path``;
    return (the mask to use, whether it was a 0/255 mask now read as 0/1)."""
    labels, counts = np.unique(mask, return_counts=True)
    if labels.size and labels[0] < 0:
        problems.append(
            f"{path}: negative labels {show_values(labels[labels < 0])}; labels are 0..K-1"
        )
    binary255 = (
        (num_classes is None or num_classes < 256)
        and 255 in labels
        and set(labels.tolist()) <= {0, 255}
    )
    if binary255:
        return (mask == 255).astype(np.int64), True
    is_edge = np.isin(labels, (0, 255))
    if _looks_lossy(labels, counts, num_classes):
        problems.append(
            f"{path}: looks like an anti-aliased or JPEG-compressed 0/255 mask "
            f"({labels.size} distinct values: {show_values(labels[~is_edge])} besides 0 and "
            f"255); save masks losslessly with exact labels"
        )
    elif num_classes is None and labels.size > MAX_DISTINCT_LABELS:
        problems.append(
            f"{path}: {labels.size} distinct values; looks like an anti-aliased, "
            f"JPEG-like or intensity image, not a label mask (pass --num-classes if intended)"
        )
    elif num_classes is None and _sparse_large(labels):
        problems.append(
            f"{path}: labels {show_values(labels)} are not a class map: the largest, "
            f"{int(labels[-1])}, is far above the {labels.size} values used (a binary mask "
            f"saved as 0/{int(labels[-1])}? save it as 0/1); classes are 0..K-1 (pass "
            f"--num-classes K to check against K classes)"
        )
    elif num_classes is not None and labels.size and labels[-1] >= num_classes:
        problems.append(
            f"{path}: labels {show_values(labels[labels >= num_classes])} are outside "
            f"0..{num_classes - 1} (num_classes={num_classes})"
        )
    return mask, False
