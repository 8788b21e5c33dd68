"""int8 calibration of a trained model, stored with it, and the check that decides its use.

:func:`int8_calibration` measures activation ranges on training patches
(:func:`unetkit.infer.int8.calibrate_percentiles`), searches on other crops of the training
images for the percentile and for the few layers that must stay in fp32 for int8 label maps to
agree with fp32 (:mod:`unetkit.infer.int8_search`), then predicts held-out images in fp32 and in
the chosen int8 and records how well the two label maps agree (and, where layers stay in fp32,
how well all-int8 agreed). The result is the ``"int8"`` entry of a model
file's metadata::

    {"ranges": {point: [low, high]}, "percentile": 99.999, "headroom": 1.25, "patches": 32,
     "agreement": {"foreground_dice": 0.998, "images": 6}, "weights_sha256": "..."}

``unetkit train`` stores it at the end of a run; ``unetkit calibrate`` adds it to an existing
model. Prediction uses int8 by default (:func:`unetkit.infer.engine.inference_network`) only
where the agreement is at least :data:`AUTO_AGREEMENT`, the weights are the calibrated ones
and the CPU has VNNI. The entry's fields are
:class:`~unetkit.infer.calibration_entry.Int8Calibration` (a leaf module, so that the engine
reads entries without importing this one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from unetkit.hardware import native_bf16
from unetkit.infer import int8
from unetkit.infer.calibration_entry import AUTO_AGREEMENT, Int8Calibration, agreement_of
from unetkit.infer.int8 import HEADROOM, calibrate_percentiles
from unetkit.infer.int8_bias import bias_corrections
from unetkit.infer.int8_equalize import channel_factors, equalisable_maps
from unetkit.infer.int8_search import SEARCH_TARGET, Variant, search
from unetkit.model import UNet
from unetkit.modelfile import weights_digest

#: Calibration patches (a few hundred thousand pixels are enough for stable ranges).
CALIBRATION_PATCHES = 32
#: Held-out images on which agreement is measured.
AGREEMENT_IMAGES = 8
#: Crops of calibration images (other than the range patches) on which the search measures.
SEARCH_CROPS = 16
#: Activation percentiles the search tries (one calibration pass gives them all).
PERCENTILES = (99.99, 99.999, 100.0)
#: Per-channel equalisation strengths the search tries besides none
#: (:mod:`unetkit.infer.int8_equalize`; one calibration pass each).
ALPHAS = (0.5, 1.0)
#: The search stops once the held-out images agree at ``AUTO_AGREEMENT`` plus this margin.
CHECK_MARGIN = 0.001


def calibration_patches(
    model: UNet,
    images: Sequence[np.ndarray],
    patch: Sequence[int],
    *,
    n: int = CALIBRATION_PATCHES,
    batch: int = 4,
    seed: int = 0,
) -> list[torch.Tensor]:
    """Up to ``n`` random crops of normalised ``images`` (``(C, *S)`` each), batched.

    Crops are ``patch`` (clipped to the image) and, for a valid-padding model, shrunk to the
    nearest input size it accepts. Deterministic for a given ``seed``.
    """
    if not images:
        raise ValueError("calibration: no images to calibrate on")
    rng = np.random.default_rng(seed)
    crops: dict[tuple[int, ...], list[np.ndarray]] = {}
    for k in range(n):
        image = images[int(rng.integers(len(images)))] if k >= len(images) else images[k]
        size = [min(int(p), int(s)) for p, s in zip(patch, image.shape[1:], strict=True)]
        if model.config.padding == "valid":
            size = [_largest_valid(model, s, a) for a, s in enumerate(size)]
        shape = image.shape[1:]
        starts = [int(rng.integers(0, s - c + 1)) for s, c in zip(shape, size, strict=True)]
        region = (slice(None), *(slice(a, a + c) for a, c in zip(starts, size, strict=True)))
        crops.setdefault(tuple(size), []).append(np.ascontiguousarray(image[region]))
    out: list[torch.Tensor] = []
    for same in crops.values():
        for i in range(0, len(same), batch):
            out.append(torch.from_numpy(np.stack(same[i : i + batch]).astype(np.float32)))
    return out


def _largest_valid(model: UNet, size: int, axis: int = 0) -> int:
    sizes = model.valid_input_sizes(1, size, axis)
    if not sizes:
        raise ValueError(
            f"calibration: images of {size} pixels are smaller than the smallest input this "
            f"valid-padding model accepts"
        )
    return sizes[-1]


def foreground_agreement(
    a: Sequence[np.ndarray], b: Sequence[np.ndarray], num_classes: int
) -> float:
    """Mean over images of the mean Dice over foreground classes between two label maps.

    A class absent from both maps of an image is skipped; an image with no foreground in
    either counts as full agreement.
    """
    from unetkit.metrics import dice

    scores = []
    for x, y in zip(a, b, strict=True):
        per_class = dice(x, y, max(num_classes, 2))[1:]
        present = per_class[~np.isnan(per_class)]
        scores.append(float(present.mean()) if present.size else 1.0)
    return float(np.mean(scores)) if scores else float("nan")


def _label_maps(model: UNet, images: Sequence[np.ndarray], precision: str, int8: Any) -> list:
    from unetkit.infer.normalization import Normalization
    from unetkit.infer.predictor import PredictOptions, predict_array

    channels = model.config.in_channels
    identity = Normalization(mode="dataset", mean=(0.0,) * channels, std=(1.0,) * channels)
    options = PredictOptions(precision=precision)
    return [
        predict_array(model, im, options=options, normalization=identity, int8=int8).labels
        for im in images
    ]


def int8_calibration(
    model: UNet,
    calibration_images: Sequence[np.ndarray],
    check_images: Sequence[np.ndarray],
    *,
    patch: Sequence[int],
    percentile: float | None = None,
    seed: int = 0,
    alphas: Sequence[float] = ALPHAS,
    correct: bool = True,
) -> dict[str, Any]:
    """The ``"int8"`` metadata entry for ``model`` (see the module doc).

    ``calibration_images`` and ``check_images``: normalised ``(C, *S)`` arrays, the second
    ideally held out (validation images). ``percentile``: the activation percentile, or
    ``None`` to choose among :data:`PERCENTILES`. ``alphas``: per-channel equalisation
    strengths tried besides none (``()``: none tried). ``correct``: try the bias correction
    (:mod:`unetkit.infer.int8_bias`). Raises
    :class:`unetkit.infer.int8.Int8Unsupported` for a model without an int8 path.
    """
    model = model.eval()
    k = int(model.config.out_channels)
    classes = 2 if k == 1 else k
    patches = calibration_patches(model, calibration_images, patch, seed=seed)
    percentiles = PERCENTILES if percentile is None else (float(percentile),)
    by_percentile = calibrate_percentiles(model, patches, percentiles)
    spread = int8.channel_ranges(model, patches)
    edges = equalisable_maps(int8.folded_copy(model))
    equalised = {}
    for alpha in alphas:
        factors = channel_factors(spread, alpha, edges)
        if factors:
            ranges = calibrate_percentiles(model, patches, percentiles, factors=factors)
            equalised[alpha] = (factors, ranges)
    crops = calibration_patches(model, calibration_images, patch, n=SEARCH_CROPS, seed=seed + 1)
    check = list(check_images[:AGREEMENT_IMAGES])
    reference = _label_maps(model, check, "fp32", None) if check else []

    def held_out(variant: Variant) -> float:
        entry = Int8Calibration(
            ranges=variant.ranges,
            fp32_layers=variant.fp32,
            factors={k: tuple(v) for k, v in variant.factors.items()},
            bias={k: tuple(v) for k, v in variant.bias.items()},
        ).to_metadata()
        return foreground_agreement(_label_maps(model, check, "int8", entry), reference, classes)

    found = search(
        model,
        by_percentile,
        crops,
        lambda a, b: foreground_agreement(a, b, classes),
        equalised=equalised,
        bias=(lambda f, r: bias_corrections(model, patches, r, factors=f)) if correct else None,
        check=held_out if check else None,
        check_target=AUTO_AGREEMENT + CHECK_MARGIN,
    )
    calibration = Int8Calibration(
        ranges=found.ranges,
        percentile=found.percentile,
        headroom=HEADROOM,
        patches=sum(int(p.shape[0]) for p in patches),
        weights_sha256=weights_digest(model),
        fp32_layers=found.fp32_layers,
        search={
            "target": SEARCH_TARGET,
            "crops": found.crops,
            "all_int8": found.all_int8,
            "mixed": found.mixed,
            "percentiles": {str(p): a for p, a in found.percentiles.items()},
            "sensitivity": dict(found.sensitivity),
            "alphas": {str(a): v for a, v in found.alphas.items()},
            "without_bias_correction": found.without_bias,
            "held_out_target": AUTO_AGREEMENT + CHECK_MARGIN,
            "held_out": {",".join(k) or "all-int8": v for k, v in found.checked.items()},
            "fp32_work": found.cost,
        },
        alpha=found.alpha,
        factors={k: tuple(v) for k, v in found.factors.items()},
        bias={k: tuple(v) for k, v in found.bias.items()},
    )
    if check:
        variant = Variant(found.ranges, found.fp32_layers, found.factors, found.bias)
        agreement = found.checked.get(found.fp32_layers)
        if agreement is None:
            agreement = held_out(variant)
        before = None
        if found.fp32_layers:
            before = found.checked.get(())
            if before is None:
                before = held_out(replace(variant, fp32=()))
        bf16 = None  # measured where the CPU runs bf16 natively (elsewhere it is emulated)
        if native_bf16("cpu"):
            bf16 = foreground_agreement(_label_maps(model, check, "bf16", None), reference, classes)
        calibration = replace(
            calibration,
            agreement=agreement,
            agreement_images=len(check),
            all_int8_agreement=before,
            bf16_agreement=bf16,
        )
    return calibration.to_metadata()


def describe(entry: Mapping[str, Any] | None) -> list[str]:
    """What a model's int8 calibration chose and measured, as lines for the user."""
    calibration = Int8Calibration.from_metadata(entry)
    if calibration is None:
        return ["int8: not calibrated (run 'unetkit calibrate --model MODEL --data DIR')"]
    lines = [
        f"int8: calibrated on {calibration.patches} patches, activation percentile "
        f"{calibration.percentile}, headroom {calibration.headroom}"
    ]
    if calibration.agreement is None:
        lines.append("int8: agreement with fp32 not measured (no held-out images)")
    else:
        before = calibration.all_int8_agreement
        was = "" if before is None else f" (all layers int8: {before:.4f})"
        lines.append(
            f"int8: label maps agree with fp32 at foreground Dice {calibration.agreement:.4f} on "
            f"{calibration.agreement_images} held-out image(s){was}; needed for the default: "
            f"{AUTO_AGREEMENT}"
        )
    if calibration.bf16_agreement is not None:
        lines.append(
            f"bf16: label maps agree with fp32 at foreground Dice {calibration.bf16_agreement:.4f} "
            f"on the same images; the float path of 'auto' runs bf16 (where the CPU is faster in "
            f"it) only at {AUTO_AGREEMENT} or more"
        )
    gains = calibration.search.get("sensitivity", {})
    if calibration.fp32_layers:
        lines.append(
            f"int8: {len(calibration.fp32_layers)} layer(s) kept in fp32, the most agreement per "
            f"work moved to fp32 (gained alone, on {calibration.search.get('crops', '?')} crops):"
        )
        for name in calibration.fp32_layers:
            gain = gains.get(name)
            lines.append(f"  {name}" + ("" if gain is None else f"  {gain:+.4f}"))
    elif calibration.search:
        base, target = calibration.search.get("all_int8", 0.0), calibration.search.get("target")
        why = "reached the search target" if base >= (target or 1.0) else "no layer helped"
        lines.append(
            f"int8: every layer in int8 (all-int8 agreement {base:.4f} on "
            f"{calibration.search.get('crops', '?')} crops {why}, target {target})"
        )
    search = calibration.search
    if calibration.bias:
        lines.append(
            f"int8: bias correction on {len(calibration.bias)} layer(s) (the mean output shift of "
            f"weight rounding, measured on the calibration patches, removed): all-int8 agreement "
            f"on crops {search.get('without_bias_correction', float('nan')):.4f} -> "
            f"{search.get('all_int8', float('nan')):.4f}"
        )
    checked = search.get("held_out", {})
    if checked:
        listed = ", ".join(f"{k}: {v:.4f}" for k, v in checked.items())
        lines.append(
            f"int8: the search stops once the held-out images agree at "
            f"{search.get('held_out_target')} (checked: {listed})"
        )
    if calibration.fp32_layers and "fp32_work" in search:
        lines.append(
            f"int8: the fp32 layers and the readers they keep in fp32 hold "
            f"{search['fp32_work']:.0%} of the int8 work (multiply-adds and map values)"
        )
    alphas = calibration.search.get("alphas", {})
    if calibration.factors:
        lines.append(
            f"int8: per-channel ranges: {len(calibration.factors)} map(s) equalised at strength "
            f"{calibration.alpha} (channels scaled toward their map's widest before rounding, "
            "undone by the layers that read them)"
        )
    if len(alphas) > 1:
        listed = ", ".join(f"{a}: {v:.4f}" for a, v in alphas.items())
        lines.append(f"int8: best all-int8 agreement per equalisation strength tried: {listed}")
    tried = calibration.search.get("percentiles", {})
    if len(tried) > 1:
        listed = ", ".join(f"{p}: {a:.4f}" for p, a in tried.items())
        lines.append(f"int8: all-int8 agreement per percentile tried: {listed}")
    lines.append(f"int8: {default_precision_note(entry)}")
    return lines


def default_precision_note(entry: Mapping[str, Any] | None) -> str:
    """What ``--precision auto`` runs with this calibration on this CPU, for the user."""
    agreement = agreement_of(entry)
    if not int8.has_vnni():
        return "prediction uses fp32 by default (no VNNI on this CPU)"
    if agreement is not None and agreement >= AUTO_AGREEMENT:
        return "prediction uses int8 by default on this CPU"
    return "prediction uses fp32 by default"


__all__ = [
    "AGREEMENT_IMAGES",
    "AUTO_AGREEMENT",
    "CALIBRATION_PATCHES",
    "agreement_of",
    "calibration_patches",
    "default_precision_note",
    "describe",
    "foreground_agreement",
    "int8_calibration",
    "weights_digest",
]
