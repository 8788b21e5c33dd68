"""Training steps per minute: unetkit's classic U-Net against MONAI BasicUNet (the same
architecture: five levels ``w..16w``, batch norm, ReLU, transposed-convolution upsampling), in
the same run, and where the time of one step of the default recipe goes.

Part 1 (always): one training step (forward, cross-entropy, backward, SGD update) of each
implementation on the same random batch, interleaved (``unetkit, monai, unetkit, monai, ...``)
so that a machine whose load changes hurts both alike; the median of ``--repeats`` after a
warm-up. ``unetkit`` is the path ``unetkit train`` runs by default (its precision and memory
format policy); ``--compile`` adds ``torch.compile`` of the unetkit model, with its compile time
and the number of steps after which it has paid for itself.

Part 2 (``--data DIR``): one step of the default recipe for that dataset (what ``unetkit train
--data DIR --max-minutes M`` would run), split into batch preparation (crop, augmentation,
normalised patches as tensors) and forward + loss + backward + optimiser step; whole steps with
the next batch prepared in a background thread (what the trainer does) against without, in
alternating blocks; then the top operators of a ``torch.profiler`` trace of a few steps.

Part 3 (``--data DIR --steps N``, instead of part 2): ``N`` whole steps of the default recipe
exactly as the trainer runs them (its batches, precision, memory format, optimiser, gradient
clipping), after ``--warmup``; the median ms per step. Run it with ``PYTHONPATH`` pointing at
another checkout's ``src`` to compare versions of unetkit with the same harness. With
``--compile``: the same steps with the training forward under ``torch.compile``, its compile
time and break-even step count.

``--allocator keep`` (the default: what ``unetkit train`` does, :mod:`unetkit.allocator`) makes
glibc keep freed memory for the whole process, so in part 1 MONAI gets it too; ``glibc`` leaves
the allocator alone in part 1 (what a plain PyTorch script gets; the trainer's own runner in
parts 2 and 3 sets it anyway).

    PYTHONPATH=src python benchmarks/train_speed.py --width 32 --size 256 --batch 4
    PYTHONPATH=src python benchmarks/train_speed.py --data ../shared/data/isbi2012-em
    PYTHONPATH=src python benchmarks/train_speed.py --data ../shared/data/isbi2012-em --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from impls import build_train, reference_model


def compiled_step(
    x: torch.Tensor, y: torch.Tensor, width: int, default: dict[str, Any]
) -> tuple[Callable[[torch.Tensor, torch.Tensor], None], dict[str, Any]]:
    """The unetkit default step under ``torch.compile`` (same precision and memory format),
    compiled on its first call, whose time is returned as ``compile_s``."""
    import torch.nn.functional as F

    from unetkit.precision import autocast, to_channels_last
    from unetkit.train.schedule import make_optimizer

    model = reference_model("unetkit-eager-fp32", 2, width, 5)
    if default["channels_last"]:
        model = to_channels_last(model, 2)
    compiled = torch.compile(model)
    opt = make_optimizer(model.parameters(), "sgd", 1e-3, 0.0, 0.9)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        if default["channels_last"]:
            xb = to_channels_last(xb, 2)
        opt.zero_grad(set_to_none=True)
        with autocast(str(default["precision"])):
            logits = compiled(xb)
        F.cross_entropy(logits.float(), yb).backward()
        opt.step()

    start = time.perf_counter()
    step(x, y)
    return step, {**default, "compile_s": time.perf_counter() - start}


def time_steps(args: argparse.Namespace) -> None:
    """Part 1: the interleaved step times and their ratio."""
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, args.size, args.size)
    y = torch.randint(0, 2, (args.batch, args.size, args.size))
    steps = {}
    notes = {}
    for impl in ("unetkit-default", "monai-basicunet"):
        model = reference_model(impl, 2, args.width, 5)
        steps[impl], notes[impl] = build_train(impl, model, 2)
    if args.compile:
        steps["unetkit-compile"], notes["unetkit-compile"] = compiled_step(
            x, y, args.width, notes["unetkit-default"]
        )
    for step in steps.values():  # warm-up
        for _ in range(args.warmup):
            step(x, y)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for impl, step in steps.items():
            start = time.perf_counter()
            step(x, y)
            times[impl].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"training step, 2D {args.batch}x1x{args.size}x{args.size}, widths {args.width}..."
        f"{16 * args.width}, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    for impl, seconds in med.items():
        spread = (max(times[impl]) - min(times[impl])) / seconds
        print(
            f"  {impl:<18} {seconds * 1000:8.1f} ms/step  {60 / seconds:7.1f} steps/min  "
            f"spread {spread:.0%}  {notes[impl]}"
        )
    ratio = med["monai-basicunet"] / med["unetkit-default"]
    print(f"  unetkit default vs MONAI BasicUNet: {ratio:.2f}x the steps per minute")
    if "unetkit-compile" in med:
        gain = med["unetkit-default"] - med["unetkit-compile"]
        compile_s = notes["unetkit-compile"]["compile_s"]
        paid = f"after {compile_s / gain:.0f} steps" if gain > 0 else "never (no faster)"
        print(
            f"  torch.compile: {med['unetkit-default'] / med['unetkit-compile']:.2f}x eager, "
            f"compile {compile_s:.1f} s, pays for itself {paid}"
        )


def recipe_runner(args: argparse.Namespace) -> Any:
    """The trainer's :class:`StepRunner` for the default recipe on ``args.data``."""
    from unetkit.train.distributed import DistInfo
    from unetkit.train.prepare import prepare_data
    from unetkit.train.recipe import apply_recipe, summarize_data, with_declaration
    from unetkit.train.step import StepRunner
    from unetkit.workflow import resolve_config, with_run_defaults

    config, keys = resolve_config(
        None, [f"data.path={args.data}", f"train.max_minutes={args.minutes}"]
    )
    config = with_declaration(with_run_defaults(config, keys), keys)
    prepared = prepare_data(config.data, seed=config.train.seed)
    config, _ = apply_recipe(config, summarize_data(prepared.raw_train, prepared.num_classes), keys)
    runner = StepRunner(config, prepared, DistInfo())
    runner.choose_precision()
    print(
        f"default recipe on {args.data}: patch {config.data.patch_size}, batch "
        f"{config.train.batch_size}, widths {config.model.widths}, precision {runner.precision}, "
        f"{torch.get_num_threads()} threads"
    )
    return runner


def time_recipe_steps(args: argparse.Namespace) -> None:
    """Part 3: ``args.steps`` whole steps of the default recipe, as the trainer runs them."""
    runner = recipe_runner(args)

    def run(epoch: int) -> list[float]:
        times = []
        for i in range(args.warmup + args.steps):
            start = time.perf_counter()
            runner.train_step(epoch, i, 1000 * epoch + i)
            times.append(time.perf_counter() - start)
        return times

    eager = statistics.median(run(0)[args.warmup :])
    print(f"  {eager * 1000:.1f} ms/step, {60 / eager:.1f} steps/min (median of {args.steps})")
    if args.compile:
        runner.forward_module = torch.compile(runner.forward_module)
        times = run(1)
        compiled = statistics.median(times[args.warmup :])
        compile_s = times[0] - compiled
        gain = eager - compiled
        paid = f"after {compile_s / gain:.0f} steps" if gain > 0 else "never (no faster)"
        print(
            f"  torch.compile: {compiled * 1000:.1f} ms/step ({eager / compiled:.2f}x eager), "
            f"compile {compile_s:.1f} s, pays for itself {paid}"
        )
    runner.batches.close()


def profile_recipe(args: argparse.Namespace) -> None:
    """Part 2: batch preparation vs compute for the default recipe on ``args.data``."""
    from torch.profiler import ProfilerActivity, profile

    runner = recipe_runner(args)
    prefetcher = runner.batches
    source = prefetcher.source
    prep: list[float] = []
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        source.batch(0, i)
        prep.append(time.perf_counter() - start)
    prep_s = statistics.median(prep[args.warmup :])
    # whole steps on consecutive batches, with the next batch built in the background
    # (the trainer's default) and without, in alternating blocks
    timings: dict[bool, list[float]] = {True: [], False: []}
    step = 0
    for block in range(2 * args.blocks):
        prefetcher.enabled = block % 2 == 0
        for i in range(args.warmup + args.repeats):
            start = time.perf_counter()
            runner.train_step(1 + block, i, step)
            if i >= args.warmup:
                timings[prefetcher.enabled].append(time.perf_counter() - start)
            step += 1
    prefetcher.close()
    with_s = statistics.median(timings[True])
    without_s = statistics.median(timings[False])
    print(
        f"  step {without_s * 1000:.0f} ms: batch preparation {prep_s * 1000:.0f} ms "
        f"({prep_s / without_s:.0%}), forward+loss+backward+update "
        f"{(without_s - prep_s) * 1000:.0f} ms"
    )
    print(
        f"  with the next batch prepared in the background: step {with_s * 1000:.0f} ms, "
        f"{without_s / with_s:.2f}x the steps per minute"
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(3):
            runner.train_step(0, i, 1000 + i)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="default: torch's choice")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--data", help="profile one step of the default recipe on this dataset")
    p.add_argument("--minutes", type=float, default=10.0, help="budget the recipe sizes for")
    p.add_argument("--top", type=int, default=15, help="profiler rows")
    p.add_argument("--blocks", type=int, default=2, help="--data: blocks with and without prefetch")
    p.add_argument("--skip-ratio", action="store_true", help="only the --data part")
    p.add_argument("--steps", type=int, default=0, help="--data: time N whole steps (part 3)")
    p.add_argument(
        "--allocator",
        choices=("keep", "glibc"),
        default="keep",
        help="keep: glibc keeps freed memory (unetkit train's setting); glibc: its defaults",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator == "keep":
        try:
            from unetkit.allocator import keep_freed_memory
        except ImportError:  # an older unetkit (PYTHONPATH): its trainer has no such setting
            print("allocator: this unetkit has no unetkit.allocator; glibc defaults")
        else:
            print(f"allocator: keep freed memory: {keep_freed_memory()}")
    if not args.skip_ratio:
        time_steps(args)
    if args.data and args.steps:
        time_recipe_steps(args)
    elif args.data:
        profile_recipe(args)


if __name__ == "__main__":
    main()
