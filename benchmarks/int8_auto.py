"""Is int8 chosen by ``--precision auto`` for default-recipe models on the four datasets?

Three steps, each re-runnable (``OUT`` defaults to ``/tmp/s5-int8``):

1. ``split``: a held-out split of every dataset in ``--data`` (``--fraction`` of the pairs,
   at least one, drawn with ``--seed``), as symlinks ``OUT/data/NAME/{train,test}/{images,masks}``;
   nothing is trained or calibrated on ``test``.
2. ``train NAME``: ``unetkit train --data OUT/data/NAME/train --out OUT/runs/NAME --max-minutes M
   --seed 0`` (the default recipe; CamVid adds ``data.ignore_index=0``, as the README says for
   void labels). Run it under the benchmark lock: ``flock /tmp/unetkit-bench.lock python ...``.
3. ``measure``: for every trained run, on its held-out images, through the public
   ``unetkit.predict`` (:mod:`int8_mixed`): what ``auto`` picks, the foreground-Dice agreement
   of int8 label maps with fp32 (all-int8 and as calibrated) and the speed of int8 against fp32.
4. ``diagnose NAME`` (short, no lock needed): why a model misses, on its held-out images: the
   agreement of all-int8 as calibrated, of int8 weights alone (float activations) and of bf16
   (the same network rounded to 8 significant bits: a model whose labels flip under bf16 has
   pixels too close to a tie for any 8-bit arithmetic), the share of pixels that keep their
   label, and each layer's gain alone in fp32.

    PYTHONPATH=src python benchmarks/int8_auto.py split
    flock /tmp/unetkit-bench.lock env PYTHONPATH=src python benchmarks/int8_auto.py train \\
        isbi2012-em --minutes 5
    flock /tmp/unetkit-bench.lock env PYTHONPATH=src python benchmarks/int8_auto.py measure
    PYTHONPATH=src python benchmarks/int8_auto.py diagnose camvid-11class
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATASETS = ("isbi2012-em", "dsb2018-nuclei", "drosophila-vnc-sstem", "camvid-11class")
EXTRA = {"camvid-11class": ["data.ignore_index=0"]}


def split(data: Path, out: Path, fraction: float, seed: int) -> None:
    """Symlinked train/test folders of every dataset under ``data`` (see the module doc)."""
    for name in DATASETS:
        images = sorted((data / name / "images").glob("*.png"))
        rng = np.random.default_rng(seed)
        n_test = max(1, round(fraction * len(images)))
        test = set(rng.choice(len(images), size=n_test, replace=False).tolist())
        for i, image in enumerate(images):
            part = "test" if i in test else "train"
            for sub in ("images", "masks"):
                link = out / "data" / name / part / sub / image.name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to((data / name / sub / image.name).resolve())
        print(f"{name}: {len(images) - n_test} train, {n_test} held out")


def train(name: str, out: Path, minutes: float) -> None:
    """``unetkit train`` with the default recipe on the training part of ``name``."""
    cmd = [
        sys.executable, "-m", "unetkit", "train", "--data", str(out / "data" / name / "train"),
        "--out", str(out / "runs" / name), "--max-minutes", str(minutes), "--seed", "0",
        *EXTRA.get(name, []),
    ]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def measure(out: Path, repeat: int, threads: int, only: str | None = None) -> None:
    """The table of the module doc, for every dataset with a trained run (or ``only``)."""
    import torch

    sys.path.insert(0, str(HERE))
    from int8_mixed import measure as measure_pair

    from unetkit.infer.int8 import has_vnni

    torch.set_num_threads(threads)
    print(f"# torch {torch.__version__}, {threads} threads, VNNI: {has_vnni()}")
    rows = []
    for name in DATASETS if only is None else (only,):
        run = out / "runs" / name
        if not (run / "model.safetensors").is_file():
            continue
        row = measure_pair(str(run), str(out / "data" / name / "test"), repeat)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(
        "\n| dataset | held-out | fp32 layers | agreement all-int8 | agreement as calibrated | "
        "pixels agreeing | auto picks | fp32 s | int8 s | int8 speed-up (all-int8) |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {Path(r['run']).name} | {r['images']} | {len(r['fp32_layers'])}/"
            f"{r['layers'] or '-'} | {r['agreement_all_int8']:.4f} | {r['agreement_mixed']:.4f} | "
            f"{r['pixels_agreeing_mixed']:.4f} | "
            f"{r['auto_picks']} | {r['seconds_fp32']:.2f} | {r['seconds_int8_mixed']:.2f} | "
            f"{r['speedup_mixed']:.2f}x ({r['speedup_all']:.2f}x) |"
        )


def _margins(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(K, *S)`` logits -> top-1 class, top-2 class, top-1 minus top-2 logit, per pixel."""
    order = np.argsort(logits, axis=0)
    c1, c2 = order[-1], order[-2]
    top1 = np.take_along_axis(logits, c1[None], 0)[0]
    top2 = np.take_along_axis(logits, c2[None], 0)[0]
    return c1, c2, top1 - top2


def ties(reference: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
    """How close to ties the pixels that ``other`` (logits) flips sit in ``reference``.

    Per pixel: the fp32 margin ``m`` (top-1 minus top-2 logit) and the change ``e`` that
    ``other`` makes to that same difference. The error scale is the median and the 99th
    percentile of ``|e|`` over all pixels; returned: the share of flipped pixels, and of all
    pixels, whose margin is below each scale."""
    margins, errors, flipped = [], [], []
    for ref, got in zip(reference, other, strict=True):
        c1, c2, m = _margins(ref)
        d = np.take_along_axis(got, c1[None], 0)[0] - np.take_along_axis(got, c2[None], 0)[0]
        margins.append(m.ravel())
        errors.append(np.abs(d - m).ravel())
        flipped.append((got.argmax(0) != c1).ravel())
    m, e, f = (np.concatenate(v) for v in (margins, errors, flipped))
    out = {"flipped": float(f.mean())}
    for what, scale in (("median", np.median(e)), ("p99", np.percentile(e, 99))):
        out[f"error_{what}"] = float(scale)
        out[f"flips_below_{what}"] = float(np.mean(m[f] < scale)) if f.any() else 0.0
        out[f"pixels_below_{what}"] = float(np.mean(m < scale))
    return out


def diagnose(run: Path, test: Path, train: Path | None, threads: int, layers: bool) -> None:
    """The diagnosis of the module doc for ``run`` on the images of ``test``, as JSON lines.

    With ``train`` (the run's training images), also the bias correction
    (:mod:`unetkit.infer.int8_bias`) computed on the calibration's patches of those images."""
    import torch

    from unetkit.infer.calibration import calibration_patches, foreground_agreement
    from unetkit.infer.calibration_entry import Int8Calibration
    from unetkit.infer.files import find_inputs
    from unetkit.infer.int8 import folded_copy, layer_names, quantize_for_inference
    from unetkit.infer.int8_bias import bias_corrections
    from unetkit.infer.int8_layers import quantize_weight
    from unetkit.infer.int8_search import label_maps
    from unetkit.infer.normalization import Normalization
    from unetkit.io.images import read_image
    from unetkit.modelfile import load_with_metadata, resolve_model_path

    torch.set_num_threads(threads)
    model, meta = load_with_metadata(resolve_model_path(run))
    model = model.eval()
    name = run.name if run.name not in ("", ".") else str(run)
    calibration = Int8Calibration.from_metadata(meta.get("int8"))
    if calibration is None:
        raise SystemExit(f"{run}: no int8 calibration")
    norm = Normalization.from_metadata(meta.get("normalization"))

    def load(folder: Path) -> list[np.ndarray]:
        folder = folder / "images" if (folder / "images").is_dir() else folder
        files = find_inputs([str(folder)])
        images = [read_image(f, spatial_dims=model.config.spatial_dims) for f in files]
        return [norm.resolve(im).apply(im).astype(np.float32) for im in images]

    xs = [torch.from_numpy(im[None]) for im in load(test)]
    k = int(model.config.out_channels)
    classes = 2 if k == 1 else k

    def logits(net) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
        with torch.inference_mode():
            return [net(x)[0].float().numpy() for x in xs]

    ref_logits = logits(model)
    reference = [label_maps(torch.from_numpy(v[None]))[0] for v in ref_logits]

    def row(what: str, net, **extra: object) -> float:  # type: ignore[no-untyped-def]
        out = logits(net)
        got = [label_maps(torch.from_numpy(v[None]))[0] for v in out]
        agreement = foreground_agreement(got, reference, classes)
        pixels = float(np.mean([np.mean(a == b) for a, b in zip(got, reference, strict=True)]))
        near = ties(ref_logits, out) if k > 1 else {}
        print(json.dumps({"model": name, "variant": what, "agreement": round(agreement, 4),
                          "pixels_agreeing": round(pixels, 5), **near, **extra}), flush=True)
        return agreement

    def quantised(fp32: tuple[str, ...] = (), bias=None):  # type: ignore[no-untyped-def]
        return quantize_for_inference(
            model, calibration.ranges, fp32=fp32, factors=calibration.factors,
            bias=calibration.bias if bias is None else bias,
        )

    base = row("int8, every layer", quantised())
    row("int8 as calibrated", quantised(calibration.fp32_layers),
        fp32_layers=list(calibration.fp32_layers))
    if train is not None:
        patch = meta.get("patch_size") or [128] * model.config.spatial_dims
        patches = calibration_patches(model, load(train), patch)
        corrections = bias_corrections(model, patches, calibration.ranges,
                                       factors=calibration.factors)
        row("int8, every layer, bias corrected", quantised((), corrections))
        if calibration.fp32_layers:
            row("int8 as calibrated, bias corrected",
                quantised(calibration.fp32_layers, corrections))
        row("int8, no bias correction", quantised((), {}))
    weights_only = folded_copy(model)
    first = next(p for p in weights_only.points() if p.kind == "block").module.convs[0].conv
    stay = {id(weights_only.head), id(first)}  # fp32 in the int8 path too
    for m in weights_only.modules():
        if isinstance(m, torch.nn.modules.conv._ConvNd) and id(m) not in stay:
            axis = 1 if isinstance(m, torch.nn.modules.conv._ConvTransposeNd) else 0
            m.weight.data = quantize_weight(m.weight.data, axis).dequantize()
    row("int8 weights only, float activations", weights_only)
    bf16 = folded_copy(model).to(torch.bfloat16)
    row("bf16", lambda x: bf16(x.to(torch.bfloat16)).float())
    if not layers:
        return
    for layer in layer_names(model):
        maps = [label_maps(torch.from_numpy(v[None]))[0] for v in logits(quantised((layer,)))]
        gain = foreground_agreement(maps, reference, classes) - base
        print(json.dumps({"model": name, "alone_in_fp32": layer, "gain": round(gain, 4)}),
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("split", "train", "measure", "diagnose"))
    p.add_argument("name", nargs="?", choices=DATASETS, help="the dataset (train, diagnose)")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("/tmp/s5-int8"))
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--run", type=Path, help="diagnose: run folder (default OUT/runs/NAME)")
    p.add_argument("--test", type=Path, help="diagnose: held-out images (OUT/data/NAME/test)")
    p.add_argument("--train", type=Path, help="diagnose: training images (bias correction)")
    p.add_argument("--layers", action="store_true", help="diagnose: each layer alone in fp32")
    args = p.parse_args()
    if args.step == "split":
        split(args.data, args.out, args.fraction, args.seed)
    elif args.step == "train":
        if args.name is None:
            p.error("train needs a dataset name")
        train(args.name, args.out, args.minutes)
    elif args.step == "diagnose":
        if args.name is None and args.run is None:
            p.error("diagnose needs a dataset name or --run and --test")
        run = args.run or args.out / "runs" / args.name
        test = args.test or args.out / "data" / args.name / "test"
        diagnose(run, test, args.train, args.threads, args.layers)
    else:
        measure(args.out, args.repeat, args.threads, args.name)


if __name__ == "__main__":
    main()
