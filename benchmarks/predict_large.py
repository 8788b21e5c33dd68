"""Peak memory and time of tiled prediction on one huge grey image (default 8192 x 8192).

Runs ``unetkit.infer.predict_array`` on a synthetic image with a randomly initialised small 2D
model (the weights do not change the cost) and prints one JSON line: wall time, tiles, and the
peak resident memory of the process (``ru_maxrss``), which includes the image itself, the
label map and everything torch allocates.

``--source zarr`` measures the out-of-core path instead (:mod:`unetkit.infer.blockwise`): the
image is first written, band by band, to a chunked Zarr store in a temporary folder, then read
lazily and predicted block by block into a Zarr output store. Run both in one session and
compare ``megapixels_per_s`` (per-pixel speed) and ``peak_rss_mib``:

    PYTHONPATH=src python benchmarks/predict_large.py --size 8192 --padding same --overlap 0.25
    PYTHONPATH=src python benchmarks/predict_large.py --size 32768 --source zarr --overlap 0.25

``--suite`` does both in one session, each in its own process (peak RSS is per process): the
in-memory path on an image that fits (``--compare-size``, default 4096²) and the Zarr path at
``--size`` (default 32768² then), same model, and prints the per-pixel speed ratio and both
peaks; ``--json FILE`` keeps the numbers. ``--dims 3 --shape 512 2048 2048`` does the same for a
3D ``uint8`` volume (``unet3d_small``; the in-memory comparison volume is ``--compare-shape``).
``--repeats N`` alternates the two paths N times in one process (separate processes on a
shared machine vary by more than the gap): each repetition's per-voxel speed, the medians,
spread and ratio, also per CPU second of the process (all threads); its peak RSS is both
paths'. ``--max-blocks`` stops early and reports blocks 2..n's speed (``blocks_megapixels_per_s``).
``--profile`` profiles one block (cProfile). The input is a generated Zarr store in
``--workdir`` (default the system's temporary folder), deleted after.

The model is randomly initialised (the weights do not change the cost); ``--widths 4 8`` makes
it tiny so that memory and the out-of-core machinery, not the network, are measured. int8 is
not used here: it needs a calibrated model, and the fp32 path is what both sides share.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from unetkit.infer import PredictOptions, plan_tiles, predict_array
from unetkit.infer.block_plan import BLOCK_MEMORY
from unetkit.model import create_model


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_rows(n: int, lo: int, hi: int) -> np.ndarray:
    """Rows ``[lo, hi)`` of the synthetic ``n x n`` image, float32 raw 8-bit values."""
    y = np.linspace(0, 40, n, dtype=np.float32)
    rows = 127 + 60 * np.sin(y[lo:hi])[:, None] * np.cos(y)[None, :]
    noise = np.random.default_rng(lo).integers(0, 20, size=rows.shape, dtype=np.uint8)
    return (rows + noise).astype(np.float32)


def synthetic_slab(shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Rows ``[lo, hi)`` along the first axis of the synthetic image or volume ``shape``, as
    ``uint8`` (2D: :func:`synthetic_rows`; 3D: its in-plane pattern, shifted along z), built
    plane by plane so that generating the input never costs more than the slab itself."""
    if len(shape) == 2:
        out = np.empty((hi - lo, shape[1]), np.uint8)
        for r in range(lo, hi, 128):
            rows = synthetic_rows(shape[0], r, min(hi, r + 128))
            out[r - lo : r - lo + len(rows)] = rows.clip(0, 255)
        return out
    plane = synthetic_rows(shape[1], 0, shape[1])[:, : shape[2]].clip(0, 255).astype(np.uint8)
    out = np.empty((hi - lo, *plane.shape), np.uint8)
    for z in range(lo, hi):
        out[z - lo] = np.roll(plane, 3 * z, axis=1)
    return out


def write_input(path: str, shape: tuple[int, ...]) -> None:
    """Write the synthetic image or volume ``shape`` to a chunked uint8 Zarr store, slab by
    slab."""
    import zarr

    chunks = (64, 512, 512) if len(shape) == 3 else (1024, 1024)
    src = zarr.open_array(path, mode="w", shape=shape, chunks=chunks, dtype=np.uint8)
    for lo in range(0, shape[0], chunks[0]):
        src[lo : lo + chunks[0]] = synthetic_slab(shape, lo, min(shape[0], lo + chunks[0]))


class _StopAfterBlock(Exception):
    pass


def run_zarr(args: argparse.Namespace, model: torch.nn.Module) -> dict:
    """Write the image to a Zarr store slab by slab, then predict it block-wise into another."""

    from unetkit.infer.block_plan import block_bytes, plan_blocks
    from unetkit.infer.blockwise import choose_block, predict_blockwise
    from unetkit.infer.lazy_image import open_lazy

    shape = tuple(args.shape) if args.dims == 3 else (args.size, args.size)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        # the input is written by another process, so that this one's peak is the prediction's
        subprocess.run([sys.executable, __file__, "--write-input", str(Path(tmp) / "in.zarr"),
                        "--dims", str(args.dims), "--size", str(args.size),
                        "--shape", *map(str, args.shape)], check=True)
        before = rss_mb()
        options = PredictOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size)
        with open_lazy(Path(tmp) / "in.zarr", args.dims) as image:
            plan = plan_tiles(model.config, image.spatial, args.tile, args.overlap)
            memory = int(args.block_memory * 2**20)
            edges, batch = choose_block(plan, model.config, image.dtype, args.probabilities,
                                        args.batch_size, args.block, memory)
            blocks = len(plan_blocks(plan, edges))
            steps = [max(1, e // max(1, a.starts[1] - a.starts[0])) if len(a.starts) > 1 else 1
                     for e, a in zip(edges, plan.axes, strict=True)]
            planned = block_bytes(plan, steps, in_channels=1,
                                  out_channels=model.config.out_channels, itemsize=1,
                                  probabilities=args.probabilities)
            profile = None
            if args.profile:  # one block under cProfile, in its own output store
                prof = cProfile.Profile()

                def stop(_block: object) -> None:
                    raise _StopAfterBlock

                prof.enable()
                with contextlib.suppress(_StopAfterBlock):
                    predict_blockwise(model, image, Path(tmp) / "profiled.zarr",
                                      options=options, block=edges, memory=memory,
                                      on_block=stop)
                prof.disable()
                stats = pstats.Stats(prof).sort_stats("cumulative")
                rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
                profile = [
                    f"{fn[2]} ({Path(fn[0]).name}:{fn[1]}): {v[3]:.2f} s cumulative, "
                    f"{v[2]:.2f} s own"
                    for fn, v in rows[:14]
                ]
            start = time.perf_counter()
            written: list[tuple[float, int]] = []  # (time, output pixels) per block

            def count(block: object) -> None:
                pixels = int(np.prod([hi - lo for lo, hi in block.out]))  # type: ignore[attr-defined]
                written.append((time.perf_counter(), pixels))
                if args.max_blocks and len(written) >= args.max_blocks:
                    raise _StopAfterBlock

            with contextlib.suppress(_StopAfterBlock):
                predict_blockwise(model, image, Path(tmp) / "out.zarr", options=options,
                                  block=edges, memory=memory, probabilities=args.probabilities,
                                  on_block=count)
            seconds = time.perf_counter() - start
    out = {"source": "zarr", "shape": list(shape), "block": list(edges), "blocks": blocks,
           "block_planned_mib": round(planned / 2**20, 1), "batch": batch,
           "blocks_written": len(written),
           # blocks 2..n alone (no statistics pass, no first block): a partial run's speed
           "blocks_megapixels_per_s": round(sum(n for _, n in written[1:]) / 1e6
                                            / (written[-1][0] - written[0][0]), 3)
           if len(written) > 1 else None,
           "tiles": plan.num_tiles, "tile_in": list(plan.tile_in), "seconds": round(seconds, 1),
           "rss_before_predict_mib": round(before, 1),
           "image_mib": round(float(np.prod(shape)) / 2**20, 1)}
    if profile is not None:
        out["profile_one_block"] = profile
    return out


def run_suite(args: argparse.Namespace) -> None:
    """The in-memory path at the comparison size and the Zarr path at the full size, each in
    its own process, then the per-pixel ratio."""
    base = [sys.executable, __file__, "--dims", str(args.dims), "--padding", args.padding,
            "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch-size",
            str(args.batch_size), "--threads", str(args.threads), "--preset", args.preset,
            "--keep-mib", str(args.keep_mib)]
    if args.widths:
        base += ["--widths", *map(str, args.widths)]
    if args.workdir:
        base += ["--workdir", args.workdir]
    if args.dims == 3:
        memory = [*base, "--shape", *map(str, args.compare_shape)]
        big = [*base, "--shape", *map(str, args.shape)]
    else:
        memory = [*base, "--size", str(args.compare_size)]
        big = [*base, "--size", str(args.size)]
    big += ["--source", "zarr", "--block-memory", str(args.block_memory)]
    if args.block is not None:
        big += ["--block", str(args.block)]
    if args.max_blocks:
        big += ["--max-blocks", str(args.max_blocks)]
    if args.profile:
        big.append("--profile")
    results = {}
    for name, cmd in (("memory", memory), ("zarr", big)):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{name} run failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(results[name]))
    m, z = results["memory"], results["zarr"]
    whole = z["megapixels_per_s"] is not None
    summary = {
        "zarr_vs_memory_megapixels_per_s": round(z["megapixels_per_s"] / m["megapixels_per_s"], 3)
        if whole else None,
        "zarr_blocks_vs_memory": round(z["blocks_megapixels_per_s"] / m["megapixels_per_s"], 3)
        if z["blocks_megapixels_per_s"] else None,
        "memory_peak_rss_mib": m["peak_rss_mib"],
        "zarr_peak_rss_mib": z["peak_rss_mib"],
        "zarr_peak_under_1_5_gb": z["peak_rss_mib"] < 1.5e9 / 2**20,
    }
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "summary": summary}, indent=2))


def _memory_image(shape: tuple[int, ...]) -> np.ndarray:
    """The synthetic image or volume ``(1, *shape)``: raw 8-bit values in float32."""
    slabs = [synthetic_slab(shape, lo, min(shape[0], lo + 64)) for lo in range(0, shape[0], 64)]
    return np.concatenate(slabs).astype(np.float32)[None]


def _spread(values: list[float]) -> dict:
    """Median, min, max and (max - min) / median of repeated measurements."""
    med = float(np.median(values))
    return {"median": round(med, 3), "min": round(min(values), 3), "max": round(max(values), 3),
            "spread": round((max(values) - min(values)) / med, 3)}


def run_repeats(args: argparse.Namespace, model: torch.nn.Module) -> None:
    """The in-memory path (at ``--compare-size``/``--compare-shape``) and the block-wise path
    (at ``--size``/``--shape``) alternated ``--repeats`` times in this process (same model,
    tiles, batch and threads; the order flips every repetition so that a drift of the machine
    weighs on both), then the per-voxel speed of each, its median and spread, and the ratio."""
    from unetkit.infer.blockwise import choose_block, predict_blockwise
    from unetkit.infer.lazy_image import open_lazy

    big = tuple(args.shape) if args.dims == 3 else (args.size, args.size)
    small = tuple(args.compare_shape) if args.dims == 3 else (args.compare_size,) * 2
    options = PredictOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size)
    memory = int(args.block_memory * 2**20)
    image = _memory_image(small)
    speeds: dict[str, list[float]] = {"memory": [], "zarr": []}
    cpu: dict[str, list[float]] = {"memory": [], "zarr": []}  # Mvox per CPU second (all threads)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        subprocess.run([sys.executable, __file__, "--write-input", str(Path(tmp) / "in.zarr"),
                        "--dims", str(args.dims), "--size", str(args.size),
                        "--shape", *map(str, args.shape)], check=True)
        with open_lazy(Path(tmp) / "in.zarr", args.dims) as lazy:
            plan = plan_tiles(model.config, lazy.spatial, args.tile, args.overlap)
            edges, _ = choose_block(plan, model.config, lazy.dtype, args.probabilities,
                                    args.batch_size, args.block, memory)

            def timed(name: str, voxels: float, run: Callable[[], object]) -> None:
                start, cpu0 = time.perf_counter(), time.process_time()
                run()
                speeds[name].append(voxels / 1e6 / (time.perf_counter() - start))
                cpu[name].append(voxels / 1e6 / (time.process_time() - cpu0))

            for i in range(args.repeats):
                order = ("memory", "zarr") if i % 2 == 0 else ("zarr", "memory")
                dest = Path(tmp) / f"out{i}.zarr"
                for name in order:
                    if name == "memory":
                        timed(name, float(np.prod(small)), lambda: predict_array(
                            model, image, options=options, label_dtype=np.uint8,
                            keep_probabilities=args.probabilities))
                    else:
                        timed(name, float(np.prod(big)), lambda d=dest: predict_blockwise(
                            model, lazy, d, options=options, block=edges, memory=memory,
                            probabilities=args.probabilities))
                        shutil.rmtree(dest)
                m, z = speeds["memory"][-1], speeds["zarr"][-1]
                row = {"repeat": i + 1, "order": list(order), "memory_mvox_s": round(m, 3),
                       "zarr_mvox_s": round(z, 3), "ratio": round(z / m, 3),
                       "ratio_per_cpu_s": round(cpu["zarr"][-1] / cpu["memory"][-1], 3)}
                print(json.dumps(row), flush=True)
    ratios = [z / m for m, z in zip(speeds["memory"], speeds["zarr"], strict=True)]
    summary = {"repeats": args.repeats, "memory_shape": list(small), "zarr_shape": list(big),
               "block": list(edges), "threads": args.threads,
               "memory_mvox_s": _spread(speeds["memory"]), "zarr_mvox_s": _spread(speeds["zarr"]),
               "ratio_of_medians": round(float(np.median(speeds["zarr"]))
                                         / float(np.median(speeds["memory"])), 3),
               "ratio_per_repeat": _spread(ratios),
               "ratio_per_cpu_s": _spread([z / m for m, z in zip(cpu["memory"], cpu["zarr"],
                                                                  strict=True)]),
               "peak_rss_mib_both_paths": round(rss_mb(), 1)}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"speeds": speeds, "cpu_mvox_per_s": cpu,
                                               "summary": summary}, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--preset", default="unet2d_small")
    p.add_argument("--padding", choices=("same", "valid"), default="same")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--probabilities", action="store_true")
    p.add_argument("--source", choices=("memory", "zarr"), default="memory")
    p.add_argument("--block", type=int, default=None,
                   help="block edge for --source zarr (default: sized from --block-memory)")
    p.add_argument("--block-memory", type=float, default=BLOCK_MEMORY / 2**20,
                   help="MiB the tile batch and one block may plan to use (--source zarr)")
    p.add_argument("--workdir", default=None, help="where the temporary Zarr stores go")
    p.add_argument("--widths", type=int, nargs="+", help="override the preset's widths")
    p.add_argument("--dims", type=int, choices=(2, 3), default=2)
    p.add_argument("--shape", type=int, nargs=3, default=[512, 2048, 2048], help="3D volume")
    p.add_argument("--keep-mib", type=int, default=128, help="allocator: MiB kept (CLI's); 0 off")
    p.add_argument("--suite", action="store_true", help="memory at --compare-size, Zarr at --size")
    p.add_argument("--compare-size", type=int, default=4096)
    p.add_argument("--compare-shape", type=int, nargs=3, default=[64, 512, 512])
    p.add_argument("--profile", action="store_true", help="profile one block (Zarr path)")
    p.add_argument("--repeats", type=int, default=0,
                   help="alternate the in-memory path (--compare-*) and the block-wise path "
                   "this many times in one process; print each speed, medians and the ratio")
    p.add_argument("--json", help="--suite/--repeats: write the numbers to this file")
    p.add_argument("--write-input", help="only write the synthetic input store here")
    p.add_argument("--max-blocks", type=int, default=0,
                   help="--source zarr: stop after this many blocks (peak memory of a volume "
                   "too large to predict whole here; the statistics pass still reads it all)")
    args = p.parse_args()
    from unetkit.allocator import keep_freed_memory

    if args.keep_mib:
        keep_freed_memory(args.keep_mib << 20)  # as the command line does
    if args.dims == 3 and args.preset == "unet2d_small":
        args.preset = "unet3d_small"
    if args.dims == 3 and args.tile == 512:
        args.tile = 96
    if args.write_input:
        write_input(args.write_input, tuple(args.shape) if args.dims == 3 else (args.size,) * 2)
        return
    if args.suite:
        run_suite(args)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    widths = tuple(args.widths) if args.widths else None
    model = create_model(args.preset, padding=args.padding, widths=widths).eval()
    if args.repeats:
        run_repeats(args, model)
        return
    n = args.size
    pixels = float(np.prod(args.shape)) if args.dims == 3 else float(n * n)
    if args.source == "zarr":
        out = run_zarr(args, model)
        out.update(size=n if args.dims == 2 else None, preset=args.preset,
                   padding=args.padding, threads=args.threads,
                   overlap=args.overlap, probabilities=args.probabilities,
                   megapixels_per_s=round(pixels / 1e6 / out["seconds"], 3)
                   if out["blocks_written"] == out["blocks"] else None,
                   peak_rss_mib=round(rss_mb(), 1))
        print(json.dumps(out))
        return
    shape = tuple(args.shape) if args.dims == 3 else (n, n)
    image = _memory_image(shape)
    before = rss_mb()
    plan = plan_tiles(model.config, image.shape[1:], args.tile, args.overlap)
    start = time.perf_counter()
    result = predict_array(
        model,
        image,
        options=PredictOptions(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size),
        keep_probabilities=args.probabilities,
        label_dtype=np.uint8,
    )
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "size": n if args.dims == 2 else None,
                "shape": list(shape),
                "preset": args.preset,
                "padding": args.padding,
                "tile_in": list(plan.tile_in),
                "tile_out": list(plan.tile_out),
                "overlap": args.overlap,
                "tiles": plan.num_tiles,
                "threads": args.threads,
                "probabilities": args.probabilities,
                "seconds": round(seconds, 1),
                "seconds_per_tile": round(seconds / plan.num_tiles, 3),
                "megapixels_per_s": round(pixels / 1e6 / seconds, 3),
                "rss_before_predict_mib": round(before, 1),
                "peak_rss_mib": round(rss_mb(), 1),
                "image_mib": round(image.nbytes / 2**20, 1),
                "labels_shape": list(result.labels.shape),
            }
        )
    )


if __name__ == "__main__":
    main()
