"""One huge image through ``unetkit predict`` with a trained, int8-calibrated model: where the
time and the memory go, against the network alone and the int8 convolution peak.

The image is made of real training images tiled side by side (``--data``, default ISBI 2012,
16 x 16 of its 512² images for 8192²), written as a PNG. One run measures, same process and
model for the in-process rows:

* ``arithmetic``: the model's multiply-adds per output pixel (every convolution, a 2x2
  up-convolution counted per input pixel), the tiling's recompute factor (pixels the network
  computes / image pixels) and the operations the image therefore needs;
* ``peak``: PyTorch's quantized 3x3 conv2d (``measure.int8_conv_peak``) and, from it, the
  shortest time the image could take;
* ``network``: the inference network alone on batches of the plan's tiles, per op
  (``torch.profiler``), its throughput and share of the int8 peak;
* ``stages``: ``predict_array`` on the decoded image with each stage timed (tile extraction,
  normalisation, network, blending/accumulation, finalising rows: argmax);
* ``cli`` (``--cli``): ``python -m unetkit predict --model RUN --input big.png`` in a child
  process, wall time and the child's peak RSS (decode and PNG encode included).

    PYTHONPATH=src python benchmarks/predict_huge.py --model runs/isbi_w16 --size 2048
    PYTHONPATH=src python benchmarks/predict_huge.py --model runs/isbi_w16 --size 8192 --cli

``--precision int8`` (default) forces int8 (an untrained model's calibration may not reach the
0.995 agreement that ``auto`` needs; the speed is the same); ``--all-int8`` drops the fp32
layers the calibration kept (a trained ISBI model keeps none).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]
DATA = HERE.parent.parent / "shared" / "data" / "isbi2012-em" / "images"


def make_image(data: Path, size: int) -> np.ndarray:
    """``(size, size)`` uint8: the dataset's images tiled side by side (cycled)."""
    from unetkit.io.images import read_image

    files = sorted(data.iterdir())
    out = np.empty((size, size), np.uint8)
    k = 0
    first = read_image(files[0], spatial_dims=2, keep_integers=True)[0]
    h, w = first.shape
    for y in range(0, size, h):
        for x in range(0, size, w):
            im = read_image(files[k % len(files)], spatial_dims=2, keep_integers=True)[0]
            k += 1
            tile = im[: min(h, size - y), : min(w, size - x)]
            out[y : y + tile.shape[0], x : x + tile.shape[1]] = tile.astype(np.uint8)
    return out


def macs_per_pixel(model: torch.nn.Module, spatial_dims: int) -> float:
    """Multiply-adds per output pixel of ``model`` (float), measured on a 256-pixel input."""
    from measure import forward_flops

    n = 256
    shape = (1, model.config.in_channels, *([n] * spatial_dims))
    return forward_flops(model, shape) / 2 / n**spatial_dims


class Stages:
    """Wall and process-CPU seconds per named stage (wrapped functions)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[name] += time.perf_counter() - w
                self.cpu[name] += time.process_time() - c

        return timed


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def stage_profile(model, meta, image, options) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """``predict_array`` on ``image`` with its stages timed (module functions wrapped)."""
    from unetkit.infer import band as band_mod
    from unetkit.infer import normalization as norm_mod
    from unetkit.infer import predictor
    from unetkit.infer.normalization import Normalization

    st = Stages()
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            patched(predictor, "extract_tile", st.wrap("extract", predictor.extract_tile))
        )
        for cls, attr, name in (
            (norm_mod.ResolvedNormalization, "apply", "normalise"),
            (norm_mod.Normalization, "resolve", "statistics"),
            (band_mod.Band, "add", "accumulate"),
            (band_mod.Band, "finish_rows", "finalise"),
        ):
            stack.enter_context(patched(cls, attr, st.wrap(name, getattr(cls, attr))))
        stack.enter_context(
            patched(predictor, "run_network", st.wrap("network", predictor.run_network))
        )
        w, c = time.perf_counter(), time.process_time()
        predictor.predict_array(
            model,
            image,
            options=options,
            normalization=Normalization.from_metadata(meta.get("normalization")),
            default_tile=predictor.default_tile(2, meta),
            label_dtype=np.uint8,
            int8=meta.get("int8"),
        )
        total_wall, total_cpu = time.perf_counter() - w, time.process_time() - c
    st.wall["other"] = total_wall - sum(st.wall.values())
    st.cpu["other"] = total_cpu - sum(st.cpu.values())
    return {
        "wall_s": total_wall,
        "cpu_s": total_cpu,
        "stages_wall_s": dict(st.wall),
        "stages_cpu_s": dict(st.cpu),
        "share_wall": {k: v / total_wall for k, v in st.wall.items()},
    }


def network_profile(runner, tiles: torch.Tensor, batch: int, calls: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The inference network alone on ``calls`` batches of ``tiles``: time, and self CPU time
    per op (``torch.profiler``, one extra pass)."""
    from torch.profiler import ProfilerActivity, profile

    from unetkit.infer.engine import run_network

    xs = [tiles[(i * batch) % len(tiles) :][:batch] for i in range(calls)]
    run_network(runner, xs[0], fast=False)  # warm-up
    w, c = time.perf_counter(), time.process_time()
    for x in xs:
        run_network(runner, x, fast=False)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_network(runner, xs[0], fast=False)
    ops = sorted(
        ((e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()),
        key=lambda kv: -kv[1],
    )
    total = sum(v for _, v in ops)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "tiles": calls * batch,
        "ops_share": {k: round(v / total, 4) for k, v in ops[:14] if v > 0},
    }


def run_cli(model: str, png: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "unetkit", "predict", "--model", model, "--input", str(png)]
    cmd += ["--out", str(out), "--no-progress", "--overwrite", "--precision", args.precision]
    cmd += ["--overlap", str(args.overlap), "--batch-size", str(args.batch)]
    if args.tile is not None:
        cmd += ["--tile", str(args.tile)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = os.pathsep.join([str(args.src), env.get("PYTHONPATH", "")])
    # the child's peak RSS through /usr/bin/time: measured with wait4 here, a child forked from
    # this process counts this process's own pages (Linux keeps the larger of the two at exec)
    timer = ["/usr/bin/time", "-f", "peak_rss_kib %M"]
    w = time.perf_counter()
    proc = subprocess.Popen([*timer, *cmd], env=env, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate()
    wall = time.perf_counter() - w
    if proc.returncode != 0:
        raise SystemExit(f"predict failed: {cmd}\n{err}")
    peak = [line.split()[1] for line in err.splitlines() if line.startswith("peak_rss_kib")]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": wall,
        "cpu_s": children.ru_utime + children.ru_stime,
        "peak_rss_mib": int(peak[-1]) / 1024,
        "command": " ".join(cmd[1:]),
        "src": str(args.src),
    }


def main() -> None:
    from measure import int8_conv_peak

    from unetkit.allocator import PREDICT_KEEP_BYTES, keep_freed_memory
    from unetkit.infer.engine import inference_network
    from unetkit.infer.normalization import Normalization
    from unetkit.infer.predictor import PredictOptions, default_tile, extract_tile
    from unetkit.infer.tiling import plan_tiles
    from unetkit.io.images import write_image
    from unetkit.modelfile import load_with_metadata

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="run folder or model file")
    p.add_argument("--data", type=Path, default=DATA, help="folder of images to tile")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tile", default=None, help="tile edge (default: the predict default)")
    p.add_argument("--overlap", default="auto", help="'auto' (default) or a fraction")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="int8", choices=("int8", "auto", "fp32"))
    p.add_argument("--all-int8", action="store_true", help="drop the calibration's fp32 layers")
    p.add_argument("--calls", type=int, default=6, help="network-only batches timed")
    p.add_argument("--cli", action="store_true", help="also run the command line end to end")
    p.add_argument("--no-stages", action="store_true")
    p.add_argument(
        "--src", type=Path, default=HERE.parent / "src", help="unetkit source the CLI runs"
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory(PREDICT_KEEP_BYTES)  # as the command line does

    model, meta = load_with_metadata(Path(args.model))
    model.eval()
    meta = dict(meta)
    if args.all_int8 and meta.get("int8"):
        meta["int8"] = {k: v for k, v in meta["int8"].items() if k != "fp32_layers"}
    image = make_image(args.data, args.size)
    options = PredictOptions(
        tile=int(args.tile) if args.tile not in (None, "auto") else "auto",
        overlap=args.overlap if args.overlap == "auto" else float(args.overlap),
        batch_size=args.batch,
        precision=args.precision,
    )
    plan = plan_tiles(
        model.config, image.shape, options.tile, options.overlap, default_tile(2, meta)
    )
    computed = plan.num_tiles * int(np.prod(plan.tile_out))
    macs = macs_per_pixel(model, 2)
    peak = int8_conv_peak() or float("nan")  # GOP/s, a multiply-add = 2
    ops = 2 * macs * computed
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": args.threads,
        "load_start": os.getloadavg(),
        "size": args.size,
        "widths": list(model.config.widths),
        "fp32_layers": list((meta.get("int8") or {}).get("fp32_layers", [])),
        "plan": {
            "tile": list(plan.tile_in),
            "tiles": plan.num_tiles,
            "overlap": options.overlap,
            "recompute": computed / image.size,
        },
        "arithmetic": {
            "macs_per_pixel": macs,
            "gop_image": ops / 1e9,
            "gop_image_no_recompute": 2 * macs * image.size / 1e9,
        },
        "int8_peak_gops": peak,
        "floor_s_at_peak": ops / 1e9 / peak,
    }
    runner = inference_network(model, args.precision, meta.get("int8"))
    norm = Normalization.from_metadata(meta.get("normalization")).resolve(image[None])
    starts = [t for _, row in plan.rows() for t in row][: args.batch * 2]
    tiles = torch.from_numpy(
        np.stack([norm.apply(extract_tile(image[None], plan, t)) for t in starts])
    )
    net = network_profile(runner, tiles, args.batch, args.calls)
    per_tile = net["wall_s"] / net["tiles"]
    net["gops"] = 2 * macs * np.prod(plan.tile_out) / per_tile / 1e9
    net["share_of_peak"] = net["gops"] / peak
    net["projected_image_s"] = per_tile * plan.num_tiles
    out["network"] = net
    if not args.no_stages:
        out["stages"] = stage_profile(model, meta, image, options)
        out["stages"]["network_share_vs_network_only"] = (
            net["projected_image_s"] / out["stages"]["wall_s"]
        )
    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "big.png"
            write_image(png, image[None])
            del image
            model_path = args.model
            if args.all_int8 and out["fp32_layers"]:
                raise SystemExit("--cli with --all-int8: save an all-int8 model file first")
            out["cli"] = run_cli(model_path, png, Path(tmp) / "out", args)
            out["cli"]["network_only_share"] = net["projected_image_s"] / out["cli"]["wall_s"]
    out["load_end"] = os.getloadavg()
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.json is not None:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
