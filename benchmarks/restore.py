"""Denoising EM images: unetkit (supervised and self-supervised) against classical denoisers.

Clean images: ``../shared/data/isbi2012-em`` and ``drosophila-vnc-sstem`` (grey EM, scaled to
``0..PEAK`` photon counts; they carry their own mild noise, which counts as signal here).
Degraded images: Poisson (shot) noise at that peak plus Gaussian read noise of ``READ * PEAK``,
the Poisson–Gaussian model of a detector, seeded. The last images of each set are held out; the
rest train:

* ``unetkit supervised``: ``unetkit train task=restore`` on noisy ``images/`` with clean
  ``targets/`` for ``--steps`` optimiser steps (8 epochs; the recipe chooses everything else as
  for a run without a budget) or ``--minutes`` of wall time, once per ``--seeds`` value;
* ``unetkit self-supervised``: the same on the noisy ``images/`` alone (blind-spot masking,
  Noise2Void); nothing clean is seen, the best epoch is chosen by the blind-spot loss;
* ``nl-means``: scikit-image ``denoise_nl_means`` (``fast_mode``, sigma by Immerkaer's
  estimate), its ``h`` factor tuned on the training images against the clean ones;
* ``tv``: scikit-image ``denoise_tv_chambolle``, its weight tuned the same way;
* ``bm3d``: the ``bm3d`` package (the ``bench`` extra; skipped when it is not importable),
  ``sigma_psd`` as a factor times the same noise estimate, the factor tuned the same way (on
  the central 256 px of the tuning images: BM3D takes 5 to 15 s per 512 px image on 2 cores).

``--tta`` also scores each unetkit model with test-time augmentation (the mean of the 8
flips/rotations of the prediction, :mod:`unetkit.infer.tta`: 8 network passes per tile), as
``unetkit predict`` restores by default.
``--only`` runs a subset (``classical``, ``supervised``, ``self-supervised``) and ``--set``
adds dotted overrides to both unetkit runs (e.g. ``restore.blind_spot_fraction=0.05``), for
trying settings on the same images.

Every method is scored on the same held-out images in counts, PSNR and SSIM with each clean
image's ``max - min`` as the data range. Run from the repository root::

    PYTHONPATH=src python benchmarks/restore.py --steps 2000 --seeds 0 1 --tta --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from unetkit.io.images import read_image
from unetkit.metrics.restoration import restoration_score

PEAK = 30.0
READ = 0.05


def _clean_images(root: Path, names: list[str], size: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for name in names:
        for f in sorted((root / name / "images").glob("*.png")):
            img = read_image(f)[0][:size, :size]
            out.append((f"{name}/{f.stem}", (img / 255.0 * PEAK).astype(np.float32)))
    return out


def _degrade(clean: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 2026])
    return (rng.poisson(clean) + rng.normal(0.0, READ * PEAK, clean.shape)).astype(np.float32)


def _score(pred: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    s = restoration_score(pred[None], clean[None])
    return s.psnr, s.ssim


def _tune(
    denoise: Callable[[np.ndarray, float], np.ndarray],
    grid: list[float],
    pairs: list[tuple[np.ndarray, np.ndarray]],
) -> float:
    """The grid value with the best mean PSNR on the training pairs (noisy, clean)."""
    best = max(grid, key=lambda v: np.mean([_score(denoise(n, v), c)[0] for n, c in pairs]))
    return float(best)


def _noise_sigma(x: np.ndarray) -> float:
    """Gaussian noise level by Immerkaer's (1996) Laplacian-difference estimate (scikit-image's
    ``estimate_sigma`` needs PyWavelets, which is not installed here)."""
    from scipy.ndimage import convolve

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = np.abs(convolve(x.astype(np.float64), kernel))[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * response.mean() / 6)


def _nl_means(noisy: np.ndarray, h: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    scale = float(noisy.max() - noisy.min()) or 1.0
    x = (noisy - noisy.min()) / scale
    sigma = _noise_sigma(x)
    out = denoise_nl_means(
        x, h=h * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6
    )
    return (out * scale + noisy.min()).astype(np.float32)


def _tv(noisy: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    scale = float(noisy.max() - noisy.min()) or 1.0
    out = denoise_tv_chambolle((noisy - noisy.min()) / scale, weight=weight)
    return (out * scale + noisy.min()).astype(np.float32)


def _bm3d(noisy: np.ndarray, factor: float) -> np.ndarray:
    import bm3d  # type: ignore[import-not-found]

    scale = float(noisy.max() - noisy.min()) or 1.0
    x = (noisy - noisy.min()) / scale
    out = bm3d.bm3d(x, sigma_psd=factor * _noise_sigma(x))
    return (np.asarray(out) * scale + noisy.min()).astype(np.float32)


def _centre(x: np.ndarray, side: int = 256) -> np.ndarray:
    top, left = max(0, (x.shape[0] - side) // 2), max(0, (x.shape[1] - side) // 2)
    return x[top : top + side, left : left + side]


def _budget(minutes: float, steps: int | None) -> list[str]:
    """Overrides for a wall-clock budget, or for a fixed number of optimiser steps (8
    validations; no ``max_minutes``, so the recipe chooses as for a run without a budget)."""
    if steps is None:
        return [f"train.max_minutes={minutes}", "train.auto_epochs=true"]
    epochs = 8
    return [f"train.epochs={epochs}", f"train.steps_per_epoch={max(1, steps // epochs)}"]


def _train_unetkit(folder: Path, run: Path, budget: list[str], extra: list[str]) -> Path:
    from unetkit.workflow import fit

    overrides = [
        "task=restore",
        f"data.path={folder}",
        *budget,
        "train.int8_calibration=false",
        *extra,
    ]
    fit(None, out=run, overrides=overrides, quiet=True)
    return run


Recorder = Callable[[str, Callable[[np.ndarray], np.ndarray], float], None]


def _classical(
    train: list[tuple[str, np.ndarray]], noisy: dict[str, np.ndarray], record: Recorder
) -> None:
    """Non-local means, TV and BM3D, each with its strength tuned on training images."""
    tune_pairs = [(noisy[s], c) for s, c in train[:: max(1, len(train) // 4)]]
    start = time.perf_counter()
    h = _tune(_nl_means, [0.3, 0.45, 0.6, 0.8, 1.0], tune_pairs)
    record(f"nl-means (h={h:g} sigma)", lambda x: _nl_means(x, h), time.perf_counter() - start)
    start = time.perf_counter()
    w = _tune(_tv, [0.01, 0.02, 0.04, 0.07, 0.1, 0.15], tune_pairs)
    record(f"tv-chambolle (w={w:g})", lambda x: _tv(x, w), time.perf_counter() - start)
    try:
        import bm3d  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        print("bm3d: not importable here (pip install bm3d, or the bench extra); not compared")
        return
    start = time.perf_counter()
    crops = [(_centre(n), _centre(c)) for n, c in tune_pairs]
    f = _tune(_bm3d, [0.6, 0.8, 1.0, 1.25, 1.5], crops)
    record(f"bm3d (sigma={f:g} sigma)", lambda x: _bm3d(x, f), time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--minutes", type=float, default=3.0, help="wall time per unetkit training")
    p.add_argument(
        "--steps", type=int, default=None, help="optimiser steps per unetkit run (not --minutes)"
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="train.seed of each unetkit run (repeats)"
    )
    p.add_argument("--size", type=int, default=512, help="crop of each image (top-left)")
    p.add_argument("--test", type=int, default=3, help="held-out images per dataset")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--tta", action="store_true", help="also score unetkit with 8-fold TTA")
    p.add_argument(
        "--only",
        nargs="+",
        choices=("classical", "supervised", "self-supervised"),
        default=("classical", "supervised", "self-supervised"),
    )
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides for unetkit runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: as set)")
    p.add_argument("--keep", default=None, help="copy each unetkit run folder into this folder")
    args = p.parse_args()
    root = Path(args.data)
    train, test = [], []
    for name in ("isbi2012-em", "drosophila-vnc-sstem"):
        images = _clean_images(root, [name], args.size)
        train += images[: -args.test]
        test += images[-args.test :]
    noisy = {stem: _degrade(c, i) for i, (stem, c) in enumerate(train + test)}
    results: dict[str, dict[str, float]] = {}

    def record(method: str, restore: Callable[[np.ndarray], np.ndarray], seconds: float) -> None:
        start = time.perf_counter()
        scores = [_score(restore(noisy[stem]), clean) for stem, clean in test]
        results[method] = {
            "psnr": float(np.mean([s[0] for s in scores])),
            "ssim": float(np.mean([s[1] for s in scores])),
            "train_s": seconds,
            "predict_s_per_image": (time.perf_counter() - start) / len(test),
        }
        r = results[method]
        print(
            f"{method:<26} PSNR {r['psnr']:6.2f} dB  SSIM {r['ssim']:.4f}  "
            f"(train {seconds:6.0f} s, {r['predict_s_per_image']:.2f} s/image)",
            flush=True,
        )

    print(
        f"{len(train)} training / {len(test)} held-out images ({args.size}px crops), "
        f"Poisson peak {PEAK:g} + Gaussian read noise {READ * PEAK:g} counts"
    )
    record("noisy input", lambda x: x, 0.0)
    if "classical" in args.only:
        _classical(train, noisy, record)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from unetkit.infer.normalization import Normalization
    from unetkit.infer.predictor import PredictOptions
    from unetkit.infer.restore import restore_array
    from unetkit.modelfile import load_with_metadata

    with tempfile.TemporaryDirectory() as tmp:
        sup, ssl = Path(tmp) / "sup", Path(tmp) / "ssl"
        for folder, with_targets in ((sup, True), (ssl, False)):
            (folder / "images").mkdir(parents=True)
            if with_targets:
                (folder / "targets").mkdir()
            for stem, clean in train:
                name = stem.replace("/", "_") + ".tif"
                tifffile.imwrite(folder / "images" / name, noisy[stem])
                if with_targets:
                    tifffile.imwrite(folder / "targets" / name, clean)
        for label, folder, extra in (
            ("supervised", sup, []),
            ("self-supervised", ssl, ["restore.mode=self_supervised"]),
        ):
            if label not in args.only:
                continue
            for seed in args.seeds:
                start = time.perf_counter()
                run = Path(tmp) / f"run-{folder.name}-{seed}"
                budget = _budget(args.minutes, args.steps)
                _train_unetkit(folder, run, budget, [*extra, f"train.seed={seed}", *args.set])
                seconds = time.perf_counter() - start
                if args.keep:
                    shutil.copytree(run, Path(args.keep) / run.name, dirs_exist_ok=True)
                model, meta = load_with_metadata(run)
                norm = Normalization.from_metadata(meta.get("normalization"))
                tag = f" seed {seed}" if len(args.seeds) > 1 else ""
                for tta in (False, True) if args.tta else (False,):
                    opts = PredictOptions(tta=tta)
                    record(
                        f"unetkit {label}{tag}" + (" +tta8" if tta else ""),
                        lambda x, m=model, n=norm, o=opts: restore_array(
                            m, x[None], options=o, normalization=n
                        )[0],
                        seconds,
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
