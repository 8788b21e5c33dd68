"""Guard memory before allocating it: estimate what a model, a training step or a prediction
batch needs, compare it with what the machine has, and refuse with the option to lower.

Estimates come from the configuration alone (the network is built on PyTorch's ``meta`` device,
which allocates nothing):

- the model: parameters x 4 bytes (fp32);
- a training step: weights, gradients and AdamW's two moments (4 x parameters x 4 bytes) plus
  the activations kept for the backward pass (:func:`unetkit.model.summary.summarize`) times
  :data:`TRAIN_ACTIVATION_FACTOR` plus :data:`TRAIN_OVERHEAD`;
- a prediction batch of tiles: the weights plus :data:`INFER_ACTIVATION_FACTOR` times the
  activations of one forward pass (no graph is kept, so only a few maps are alive at a time)
  plus :data:`INFER_OVERHEAD`.

The factors were set from the peak resident memory (``VmHWM``) of real fp32 CPU steps: measured
peak / estimate was 0.86-0.98 for training and about 0.93 for prediction (README, "memory").

Available memory is ``MemAvailable`` of ``/proc/meminfo`` (or the free CUDA memory when the work
runs on a CUDA device). ``UNETKIT_MEMORY_AVAILABLE`` (bytes, or with a ``K``/``M``/``G``/``T``
suffix) replaces the measured number, which is how tests make the guard trigger without
allocating anything, and how a user on a shared machine can keep unetkit below a share.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from unetkit.errors import ModelFileError, UnetkitError

ENV = "UNETKIT_MEMORY_AVAILABLE"
#: Measured peak / estimate of a training step's activations (see README, "memory guard").
TRAIN_ACTIVATION_FACTOR = 1.0
#: Share of one forward pass's activations alive at once when no graph is kept (measured).
INFER_ACTIVATION_FACTOR = 0.25
#: Fixed working memory of a step beyond tensors (allocator, oneDNN scratch), measured.
TRAIN_OVERHEAD = 256 * 2**20
INFER_OVERHEAD = 128 * 2**20
#: Share of the available memory a run may plan to use (the rest: data, allocator, Python).
USABLE = 0.9
_SUFFIX = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str, source: str = ENV) -> int:
    """``"3G"`` -> 3 * 2**30; plain numbers are bytes. ``source`` names it in errors."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _SUFFIX else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise UnetkitError(
            f"{source}: expected a number of bytes such as 8G or 500M, got {text!r}"
        ) from None
    if not value > 0 or not math.isfinite(value):
        raise UnetkitError(f"{source}: expected a positive amount of memory, got {text!r}")
    return int(value * _SUFFIX[unit])


def gib(n: float) -> str:
    """``n`` bytes as ``"1.5 GiB"`` (or MiB below 1 GiB)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def available_bytes(device: str = "cpu") -> tuple[int, str]:
    """Memory this process may still use, and where the number comes from."""
    env = os.environ.get(ENV)
    if env:
        return parse_bytes(env), ENV
    if str(device).startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free memory of {device}"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable"
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return int(pages), "free physical memory"
    except (ValueError, OSError, AttributeError):
        return 2**62, "unknown (not checked)"


def parameter_count(config: object) -> int:
    """Parameters of the U-Net that ``config`` (a ``UNetConfig``) declares; nothing allocated."""
    import torch

    from unetkit.model import UNet

    with torch.device("meta"):
        model = UNet(dataclasses.replace(config, checkpointing="off"))  # type: ignore[type-var]
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class Estimate:
    """Bytes a piece of work needs: ``weights`` (+ gradients and optimiser state when
    training), ``activations`` and a fixed ``overhead``; ``total`` is their sum."""

    weights: int
    activations: int
    overhead: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.overhead


def train_step_estimate(config: object, patch: Sequence[int], batch: int) -> Estimate:
    """A training step of ``config`` on ``batch`` patches of ``patch`` (AdamW, fp32)."""
    from unetkit.model.summary import summarize

    s = summarize(config, tuple(patch), batch=batch)  # type: ignore[arg-type]
    return Estimate(
        weights=s.total_params * 4 * 4,
        activations=int(s.activation_bytes * TRAIN_ACTIVATION_FACTOR),
        overhead=TRAIN_OVERHEAD,
    )


def predict_estimate(config: object, tile: Sequence[int], batch: int) -> Estimate:
    """One network call of prediction on ``batch`` tiles of input size ``tile``.

    Remembered per (config, tile, batch): the estimate traces the network's shapes, which on
    small images costs as much as the prediction itself, and every image of a folder asks again.
    """
    key = (repr(config), tuple(int(n) for n in tile), int(batch))
    hit = _PREDICT_ESTIMATES.get(key)
    if hit is None:
        hit = _PREDICT_ESTIMATES[key] = _predict_estimate(config, key[1], key[2])
        if len(_PREDICT_ESTIMATES) > 256:  # many shapes: forget the oldest
            del _PREDICT_ESTIMATES[next(iter(_PREDICT_ESTIMATES))]
    return hit


_PREDICT_ESTIMATES: dict[tuple[str, tuple[int, ...], int], Estimate] = {}


def _predict_estimate(config: object, tile: Sequence[int], batch: int) -> Estimate:
    from unetkit.model.summary import summarize

    s = summarize(config, tuple(tile), batch=batch)  # type: ignore[arg-type]
    return Estimate(
        weights=s.total_params * 4,
        activations=int(s.activation_bytes * INFER_ACTIVATION_FACTOR),
        overhead=INFER_OVERHEAD,
    )


def _smaller_sizes(config: object, size: Sequence[int]) -> list[tuple[int, ...]]:
    """Smaller patch/tile sizes the model accepts, largest first (halving, kept valid)."""
    from unetkit.model import sizes as model_sizes

    out: list[tuple[int, ...]] = []
    current = tuple(int(n) for n in size)
    factors = config.downsample_factors  # type: ignore[attr-defined]
    while max(current) > 8:
        nxt: list[int] = []
        for axis, n in enumerate(current):
            step = factors[axis]
            m: int | None = max(8, n // 2)
            if config.padding == "valid":  # type: ignore[attr-defined]
                m = model_sizes.nearest_valid_sizes(config, m, axis)[0]  # type: ignore[arg-type]
            elif m >= step:
                m = (m // step) * step
            if m is None:  # no smaller size the model accepts
                return out
            nxt.append(m)
        if tuple(nxt) == current:
            break
        current = tuple(nxt)
        out.append(current)
    return out


def _limit(have: int, source: str) -> str:
    return f"{gib(have * USABLE)} may be used ({USABLE:.0%} of {gib(have)} available, {source})"


def _fmt(size: Sequence[int]) -> str:
    return " ".join(str(n) for n in size)


def check_train(
    config: object,
    patch: Sequence[int],
    batch: int,
    *,
    device: str = "cpu",
    available: int | None = None,
) -> Estimate:
    """Refuse a training step that does not fit, naming the option to lower and a value that
    would fit (``--batch-size``, then ``--patch-size``, then ``model.widths``).

    ``config`` is the run's ``UNetConfig``; ``available`` replaces the measured memory.

    Raises:
        UnetkitError: the estimate exceeds :data:`USABLE` of the available memory.
    """
    have, source = (available, "given") if available is not None else available_bytes(device)
    budget = have * USABLE
    need = train_step_estimate(config, patch, batch)
    if need.total <= budget:
        return need
    head = (
        f"memory: a training step with --batch-size {batch} and --patch-size {_fmt(patch)} "
        f"needs about {gib(need.total)}; {_limit(have, source)}"
    )

    def fits(c: object, p: Sequence[int], b: int) -> bool:
        return train_step_estimate(c, p, b).total <= budget

    for b in range(batch - 1, 0, -1):
        if fits(config, patch, b):
            raise UnetkitError(f"{head}; --batch-size {b} would fit")
    for p in _smaller_sizes(config, patch):
        if fits(config, p, 1):
            best = max((b for b in range(1, batch + 1) if fits(config, p, b)), default=1)
            raise UnetkitError(f"{head}; --patch-size {_fmt(p)} --batch-size {best} would fit")
    widths = list(config.widths)  # type: ignore[attr-defined]
    smallest = _smaller_sizes(config, patch)[-1:] or [tuple(patch)]
    while max(widths) > 1:
        widths = [max(1, w // 2) for w in widths]
        c = dataclasses.replace(config, widths=tuple(widths))  # type: ignore[type-var]
        if fits(c, smallest[0], 1):
            raise UnetkitError(
                f"{head}; model.widths=[{','.join(map(str, widths))}] with --patch-size "
                f"{_fmt(smallest[0])} --batch-size 1 would fit"
            )
    raise UnetkitError(f"{head}; even the smallest model and patch do not fit")


def check_predict(
    config: object,
    tile: Sequence[int],
    batch: int,
    *,
    device: str = "cpu",
    available: int | None = None,
) -> Estimate:
    """Refuse a prediction batch that does not fit, naming ``--batch-size`` or ``--tile`` and
    a value that would fit.

    Raises:
        UnetkitError: the estimate exceeds :data:`USABLE` of the available memory.
    """
    have, source = (available, "given") if available is not None else available_bytes(device)
    budget = have * USABLE
    need = predict_estimate(config, tile, batch)
    if need.total <= budget:
        return need
    head = (
        f"memory: predicting {batch} tile(s) of {_fmt(tile)} at a time needs about "
        f"{gib(need.total)}; {_limit(have, source)}"
    )
    for b in range(batch - 1, 0, -1):
        if predict_estimate(config, tile, b).total <= budget:
            raise UnetkitError(f"{head}; --batch-size {b} would fit")
    for t in _smaller_sizes(config, tile):
        if predict_estimate(config, t, 1).total <= budget:
            raise UnetkitError(f"{head}; --tile {_fmt(t)} --batch-size 1 would fit")
    raise UnetkitError(f"{head}; the model's weights alone ({gib(need.weights)}) do not fit")


def check_model_file(config: object, source: str, *, available: int | None = None) -> int:
    """Refuse to build the model a file declares when its weights alone would not fit; call it
    before building. Returns the parameter count.

    Raises:
        ModelFileError: the declared architecture needs more memory than is available.
    """
    have, where = (available, "given") if available is not None else available_bytes("cpu")
    try:
        params = parameter_count(config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{source}: its stored model config cannot be built: {exc}") from None
    if params * 4 > have * USABLE:
        widths = list(config.widths)  # type: ignore[attr-defined]
        raise ModelFileError(
            f"{source}: declares a model of {params:,} parameters (widths {widths}), "
            f"{gib(params * 4)} of weights, more than the {gib(have)} available ({where}); "
            f"not building it (is the file from a source you trust?)"
        )
    return params


__all__ = [
    "ENV",
    "Estimate",
    "available_bytes",
    "check_model_file",
    "check_predict",
    "check_train",
    "parameter_count",
    "parse_bytes",
    "predict_estimate",
    "train_step_estimate",
]
