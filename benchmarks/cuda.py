"""The GPU check of issue #19, as one prepared script for a machine with a CUDA GPU.

    python benchmarks/cuda.py [--quick] [--minutes 2] [--cpu-dice D] [--out benchmarks/results]

1. runs the CUDA tests (``tests/cuda``, ``tests/test_device.py``);
2. times the classic width-64 U-Net (five levels, 2D 256², batch 16) and a 3D case (width 32,
   96³, batch 2) against MONAI BasicUNet configured the same way (``benchmarks/impls.py``), on
   the same GPU in the same run: training steps and inference in bf16 autocast and
   channels-last, eager and ``torch.compile``-d, as images per second and as a share of the
   GPU's bf16 tensor peak (measured here with a large matrix product);
3. trains the default recipe on ``../shared/data/isbi2012-em`` for ``--minutes`` on the GPU
   (every fifth image held out, as ``benchmarks/encoder_budget.py`` does) and scores the held-out
   images with ``unetkit evaluate``; ``--cpu-dice`` is the same split's 10-minute CPU result.

Prints one table and writes ``cuda.json``. Needs ``monai`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def bf16_peak_tflops(n: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def timed(fn: Any, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def forward_flops(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(shape, device="cuda"))
    return float(counter.get_total_flops())


def speed_case(nd: int, width: int, size: int, batch: int, quick: bool) -> list[dict[str, Any]]:
    from impls import monai_model, unetkit_config

    from unetkit.model import UNet
    from unetkit.precision import to_channels_last

    shape = (batch, 1, *([size] * nd))
    x = torch.randn(shape, device="cuda")
    y = torch.randint(0, 2, (batch, *([size] * nd)), device="cuda")
    rows = []
    builders = {
        "unetkit": lambda: UNet(unetkit_config(nd, width, 5)),
        "monai-basicunet": lambda: monai_model(nd, width, 5),
    }
    for name, build in builders.items():
        for compiled in (False, True):
            model = to_channels_last(build().cuda(), nd)
            flops = forward_flops(model, shape)
            run = torch.compile(model) if compiled else model
            xc = to_channels_last(x, nd)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step(run: Any = run, opt: Any = opt, xc: torch.Tensor = xc) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = torch.nn.functional.cross_entropy(run(xc).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            def infer(run: Any = run, xc: torch.Tensor = xc) -> None:
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    run(xc)

            reps = 5 if quick else 30
            t_train = timed(step, 3 if not compiled else 5, reps)
            model.eval()
            t_infer = timed(infer, 3 if not compiled else 5, reps)
            rows.append(
                {
                    "case": f"{nd}D {size}^{nd} b{batch} w{width}",
                    "impl": name + (" +compile" if compiled else ""),
                    "train_img_s": batch / t_train,
                    "infer_img_s": batch / t_infer,
                    "train_tflops": 3 * flops / t_train / 1e12,
                    "infer_tflops": flops / t_infer / 1e12,
                }
            )
            del model, run, opt
            torch.cuda.empty_cache()
    return rows


def isbi_run(minutes: float, work: Path) -> float:
    src = ROOT.parent / "shared" / "data" / "isbi2012-em"
    train, held = work / "train", work / "held"
    for part in (train, held):
        (part / "images").mkdir(parents=True)
        (part / "masks").mkdir(parents=True)
    for i, image in enumerate(sorted((src / "images").iterdir())):
        part = held if i % 5 == 4 else train
        shutil.copy(image, part / "images" / image.name)
        shutil.copy(src / "masks" / image.name, part / "masks" / image.name)
    unetkit = [sys.executable, "-m", "unetkit"]
    run = work / "run"
    subprocess.run(
        [*unetkit, "train", "--data", str(train), "--out", str(run), "--device", "cuda",
         "--max-minutes", str(minutes), "--seed", "0"],
        check=True,
    )
    report = work / "eval.json"
    subprocess.run(
        [*unetkit, "evaluate", "--model", str(run), "--data", str(held), "--json", str(report),
         "--device", "cuda"],
        check=True,
    )
    return float(json.loads(report.read_text())["mean"]["dice"])  # mean foreground Dice


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 1-minute training")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--cpu-dice", type=float, help="the same split's 10-minute CPU Dice")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this script measures the GPU path (issue #19)")
        return 1
    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if not args.skip_tests:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/cuda", "tests/test_device.py"],
            cwd=ROOT, capture_output=True, text=True,
        )
        result["tests"] = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr
        print("tests:", result["tests"])
    peak = bf16_peak_tflops()
    result["bf16_peak_tflops"] = peak
    rows = speed_case(2, 64, 256, 16, args.quick) + speed_case(3, 32, 96, 2, args.quick)
    for row in rows:
        row["train_share_of_peak"] = row["train_tflops"] / peak
        row["infer_share_of_peak"] = row["infer_tflops"] / peak
    result["speed"] = rows
    print(f"GPU {result['gpu']}, bf16 peak measured {peak:.0f} TFLOP/s")
    print(f"{'case':<22}{'impl':<26}{'train img/s':>12}{'infer img/s':>12}{'train %pk':>10}")
    for r in rows:
        print(
            f"{r['case']:<22}{r['impl']:<26}{r['train_img_s']:>12.1f}{r['infer_img_s']:>12.1f}"
            f"{100 * r['train_share_of_peak']:>9.1f}%"
        )
    for case in sorted({r["case"] for r in rows}):
        by = {r["impl"]: r for r in rows if r["case"] == case}
        best = max((r for k, r in by.items() if k.startswith("unetkit")),
                   key=lambda r: r["train_img_s"])
        ref = by["monai-basicunet"]
        print(f"{case}: unetkit/MONAI train {best['train_img_s'] / ref['train_img_s']:.2f}x, "
              f"infer {best['infer_img_s'] / ref['infer_img_s']:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        dice = isbi_run(1.0 if args.quick else args.minutes, Path(tmp))
    result["isbi_gpu"] = {"minutes": args.minutes, "dice": dice, "cpu_10min_dice": args.cpu_dice}
    print(f"ISBI held-out Dice: GPU {args.minutes:g} min {dice:.4f}; CPU 10 min {args.cpu_dice}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuda.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
