"""Training steps of unetkit (bf16 and fp32) against MONAI BasicUNet (fp32 and bf16 autocast),
the same architecture (five levels, batch norm, ReLU, transposed convolutions), interleaved in
one run so that load hurts all alike; the median of ``--repeats`` ms per step and the ratios.

``unetkit-bf16`` is what the automatic recipe (``train.precision=auto``) trains in where this
run's own step is measured faster in bf16 (a CPU with AMX); ``unetkit-fp32`` is the same step
with bf16 kept off (``UNETKIT_NO_BF16``, what ``auto`` gives on a CPU without AMX)::

    PYTHONPATH=src python benchmarks/train_precision.py --shape 32 256 4 --shape 16 128 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]

from impls import build_train, monai_model, unetkit_config  # noqa: E402

from unetkit.model import UNet  # noqa: E402

IMPLS = ("unetkit-bf16", "unetkit-fp32", "monai-fp32", "monai-bf16")


def make_step(impl: str, width: int):  # type: ignore[no-untyped-def]
    if impl.startswith("monai"):
        step, _ = build_train("monai-basicunet", monai_model(2, width, 5), 2)
        if impl == "monai-fp32":
            return step

        def autocast_step(x: torch.Tensor, y: torch.Tensor) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                step(x, y)

        return autocast_step
    model = UNet(unetkit_config(2, width, 5))
    if impl == "unetkit-bf16":
        return build_train("unetkit-bf16", model, 2)[0]
    os.environ["UNETKIT_NO_BF16"] = "1"
    try:
        return build_train("unetkit-default", model, 2)[0]
    finally:
        del os.environ["UNETKIT_NO_BF16"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--shape", nargs=3, type=int, action="append", metavar=("WIDTH", "SIZE", "BATCH")
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for width, size, batch in args.shape or [(32, 256, 4), (16, 128, 8)]:
        torch.manual_seed(0)
        x, y = torch.randn(batch, 1, size, size), torch.randint(0, 2, (batch, size, size))
        steps = {impl: make_step(impl, width) for impl in IMPLS}
        times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
        for step in steps.values():
            step(x, y)  # warm-up
        for _ in range(args.repeats):
            for impl, step in steps.items():
                start = time.perf_counter()
                step(x, y)
                times[impl].append(time.perf_counter() - start)
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        print(
            f"width {width}, {batch} x {size}², {args.threads} threads: "
            + ", ".join(f"{k} {v:.0f} ms" for k, v in ms.items())
        )
        print(
            f"  unetkit-bf16 vs monai-fp32 {ms['monai-fp32'] / ms['unetkit-bf16']:.2f}x, "
            f"vs monai-bf16 {ms['monai-bf16'] / ms['unetkit-bf16']:.2f}x; "
            f"unetkit-fp32 vs monai-fp32 {ms['monai-fp32'] / ms['unetkit-fp32']:.2f}x"
        )


if __name__ == "__main__":
    main()
