"""Time unetkit against its peers in one run: ``python benchmarks/run.py``.

Prints and writes (``benchmarks/results/latest.{json,md}``): the machine's measured conv and
matmul peaks (fp32, bf16, int8), and for each implementation and mode (inference, training),
widths 32 and 64 at 2D 256x256 and one 3D case: parameters, FLOPs, images per second (median of
repeats, with spread), peak memory, share of peak, and the ratio to each peer. Then the
agreement checks: label maps of the fast paths against fp32 on real images, and fp32 versus
bf16 training curves on the synthetic data.

Each measurement runs in a fresh subprocess (``--child``), so peak memory is per case and one
case's allocator state cannot help or hurt the next. ``--quick`` is a short smoke run.
Speed is never asserted anywhere; this script only measures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "src")]

PEERS = ("monai-basicunet", "unetkit-eager-fp32")


# --- child side -------------------------------------------------------------------------------


def child_peaks(case: dict[str, Any]) -> dict[str, Any]:
    import torch
    from measure import conv_peak, int8_conv_peak, matmul_peak

    from unetkit.hardware import describe

    return {
        "machine": describe(),
        "conv_fp32": conv_peak(torch.float32),
        "conv_bf16": conv_peak(torch.bfloat16),
        "conv_int8_gops": int8_conv_peak(),
        "matmul_fp32": matmul_peak(torch.float32),
        "matmul_bf16": matmul_peak(torch.bfloat16),
    }


def child_model(case: dict[str, Any]) -> dict[str, Any]:
    import torch
    from impls import build_infer, build_train, new_workdir, reference_model
    from measure import forward_flops, peak_rss_mb, reset_peak_rss, rss_mb, time_it

    from unetkit.model.summary import count_parameters

    d, batch, size = case["spatial_dims"], case["batch"], case["size"]
    shape = (batch, 1) + (size,) * d
    model = reference_model(case["impl"], d, case["width"], case["levels"])
    flops = forward_flops(model, (1, 1) + (size,) * d)
    params = count_parameters(model)
    torch.manual_seed(1)
    x = torch.randn(shape)
    result: dict[str, Any] = {"params": params, "gflop_per_image": flops / 1e9}
    if case["mode"] == "infer":
        fn, notes = build_infer(case["impl"], model, x, case["threads"], new_workdir())
        reset_peak_rss()  # the peak of running it, not of exporting or calibrating it
        base = rss_mb()
        with torch.inference_mode():
            timing = time_it(lambda: fn(x), warmup=case["warmup"], repeats=case["repeats"])
    else:
        step, notes = build_train(case["impl"], model, d)
        y = torch.randint(0, 2, (batch,) + (size,) * d)
        reset_peak_rss()
        base = rss_mb()
        timing = time_it(lambda: step(x, y), warmup=case["warmup"], repeats=case["repeats"])
    result.update(notes)
    result["timing"] = timing
    result["img_per_s"] = batch / timing["median_s"]
    result["img_per_s_cpu"] = batch / (timing["cpu_s"] / case["threads"])
    result["peak_mem_mb"] = peak_rss_mb()
    result["peak_over_base_mb"] = peak_rss_mb() - base
    work = 3 if case["mode"] == "train" else 1  # backward ~ 2 forward passes
    result["gflops_per_s"] = work * flops / 1e9 * result["img_per_s"]
    return result


def _foreground_dice(a: Any, b: Any, num_classes: int) -> float:
    import numpy as np

    from unetkit.metrics import dice

    per_class = dice(a, b, num_classes)[1:]
    return float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 1.0


def _mean_dice(preds: Any, truths: Any) -> float:
    import numpy as np

    pairs = zip(preds, truths, strict=True)
    return float(np.mean([_foreground_dice(a, b, 2) for a, b in pairs]))


def child_agreement(case: dict[str, Any]) -> dict[str, Any]:
    """Train a small U-Net on isbi2012-em, then compare label maps of the fast paths to fp32."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from impls import OrtModel, export_onnx, new_workdir, quantize_int8

    from unetkit.infer.calibration import int8_calibration
    from unetkit.infer.engine import inference_network
    from unetkit.infer.optimize import optimize_for_inference
    from unetkit.io.images import read_image, read_mask
    from unetkit.model import UNet, UNetConfig

    root = ROOT / ".." / "shared" / "data" / "isbi2012-em"
    if not root.is_dir():
        return {"skipped": "../shared/data/isbi2012-em is absent"}
    paths = sorted((root / "images").glob("*.png"))
    images = [read_image(p) for p in paths]
    images = [(im - im.mean()) / (im.std() + 1e-6) for im in images]
    masks = [read_mask(root / "masks" / p.name) for p in paths]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = UNet(UNetConfig(widths=(16, 32, 64, 128)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    train_idx = list(range(0, len(images) - 4))
    t0 = time.perf_counter()
    for _ in range(case["steps"]):
        xs, ys = [], []
        for _ in range(8):
            i = int(rng.choice(train_idx))
            r, c = rng.integers(0, 512 - 128, size=2)
            xs.append(images[i][:, r : r + 128, c : c + 128])
            ys.append(masks[i][r : r + 128, c : c + 128])
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    full = torch.from_numpy(np.stack(images))  # (N, 1, 512, 512)
    batches = list(torch.split(full, 4))
    workdir = new_workdir()
    export_onnx(model, batches[0], workdir / "m.onnx")
    quantize_int8(workdir / "m.onnx", workdir / "m8.onnx", batches[:2])
    # the calibration `unetkit train` stores: training patches, agreement on held-out images
    train_images = [images[i] for i in train_idx]
    entry = int8_calibration(model, train_images, images[-4:], patch=(128, 128))
    runners = {
        "fp32": model,
        "float": optimize_for_inference(model),
        "default": inference_network(model, "auto", entry),
        "int8": inference_network(model, "int8", entry),
        "bf16": optimize_for_inference(model, precision="bf16"),
        "ort-int8": OrtModel(workdir / "m8.onnx", case["threads"]),
    }
    labels = {}
    with torch.inference_mode():
        for name, run in runners.items():
            labels[name] = torch.cat([run(b).argmax(1) for b in batches]).numpy()
    out: dict[str, Any] = {
        "train_steps": case["steps"],
        "train_s": train_s,
        "default_is": type(runners["default"]).__name__,
        "stored_agreement_held_out": entry["agreement"],
    }
    for name in runners:
        out[f"dice_{name}_vs_fp32"] = _mean_dice(labels[name], labels["fp32"])
        out[f"dice_{name}_vs_truth"] = _mean_dice(labels[name], masks)
    return out


def child_curves(case: dict[str, Any]) -> dict[str, Any]:
    """Train the same small model from the same seed in fp32 and bf16 autocast on synthetic data;
    compare the validation Dice curves."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from unetkit.data.synthetic import make_synthetic
    from unetkit.model import UNet, UNetConfig
    from unetkit.precision import autocast

    train = make_synthetic(32, size=96, seed=0)
    val = make_synthetic(8, size=96, seed=100)
    xv = torch.from_numpy(np.stack([s.image for s in val]))
    yv = np.stack([s.mask for s in val])
    out: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = UNet(UNetConfig(widths=(8, 16, 32, 64)))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        curve = []
        for step in range(case["steps"]):
            idx = rng.choice(len(train), size=8, replace=False)
            x = torch.from_numpy(np.stack([train[i].image for i in idx]))
            y = torch.from_numpy(np.stack([train[i].mask for i in idx]))
            opt.zero_grad()
            with autocast(precision):
                logits = model(x)
            F.cross_entropy(logits.float(), y).backward()
            opt.step()
            if (step + 1) % max(1, case["steps"] // 5) == 0:
                model.eval()
                with torch.inference_mode():
                    pred = model(xv).argmax(1).numpy()
                model.train()
                curve.append(_mean_dice(pred, yv))
        out[precision] = curve
    out["final_dice_difference"] = abs(out["fp32"][-1] - out["bf16"][-1])
    return out


CHILDREN = {
    "peaks": child_peaks,
    "model": child_model,
    "agreement": child_agreement,
    "curves": child_curves,
}


def child_main(case: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(case["threads"])
    if case.get("allocator") == "tuned":
        from unetkit.allocator import keep_freed_memory

        keep_freed_memory()
    result = CHILDREN[case["kind"]](case)
    print("RESULT " + json.dumps(result))


# --- parent side ------------------------------------------------------------------------------


def run_child(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(case["threads"])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(case)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT ") :])
            out["child_wall_s"] = time.perf_counter() - t0
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": tail[0][:300]}


def configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The model cases: 2D at each width, plus one 3D case."""
    out = [
        {"spatial_dims": 2, "width": w, "levels": 5, "batch": args.batch, "size": args.size}
        for w in args.widths
    ]
    if not args.no_3d:
        out.append({"spatial_dims": 3, "width": 16, "levels": 5, "batch": 1, "size": args.size_3d})
    return out


def config_name(c: dict[str, Any]) -> str:
    shape = "x".join([str(c["size"])] * c["spatial_dims"])
    return f"{c['spatial_dims']}D w{c['width']} {c['batch']}x1x{shape}"


def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def markdown(record: dict[str, Any]) -> str:
    peaks = record["peaks"]
    m = peaks.get("machine", {})
    lines = [
        f"Machine: {m.get('cpu')} ({m.get('logical_cpus')} logical CPUs; "
        f"{', '.join(m.get('features', []))}); torch {m.get('torch')}; "
        f"{record['threads']} threads; allocator {record['allocator']}; "
        f"load average at start {fmt(record['load_start'][0])}, at end "
        f"{fmt(record['load_end'][0])}; {record['date']}.",
        "",
        "| measured peak (GFLOP/s) | fp32 | bf16 | int8 |",
        "|---|---|---|---|",
        f"| 3x3 conv2d, channels_last | {fmt(peaks['conv_fp32']['gflops'], 0)} | "
        f"{fmt(peaks['conv_bf16']['gflops'], 0)} | {fmt(peaks.get('conv_int8_gops'), 0)} |",
        f"| matmul 2048² | {fmt(peaks['matmul_fp32'], 0)} | {fmt(peaks['matmul_bf16'], 0)} | — |",
        "",
        "| case | mode | implementation | params (M) | GFLOP/img | img/s (median) | spread "
        "| peak mem (MB) | % fp32 peak | % bf16 peak | % int8 peak | × MONAI | × unetkit eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        r = row["result"]
        if "error" in r:
            lines.append(
                f"| {row['case']} | {row['mode']} | {row['impl']} | error: {r['error']} "
                "| | | | | | | | | |"
            )
            continue
        extra = ""
        if r.get("compile_s") is not None:
            extra = f" (compile {r['compile_s']:.0f} s)"
        if r.get("precision"):
            extra += f" [{r['precision']}]"
        lines.append(
            f"| {row['case']} | {row['mode']} | {row['impl']}{extra} | {r['params'] / 1e6:.1f} "
            f"| {r['gflop_per_image']:.1f} | {r['img_per_s']:.3f} "
            f"| {100 * r['timing']['spread']:.0f}% | {r['peak_over_base_mb']:.0f} "
            f"| {fmt(row.get('share_fp32'), 0)} | {fmt(row.get('share_bf16'), 0)} "
            f"| {fmt(row.get('share_int8'), 0)} | {fmt(row.get('x_monai-basicunet'))} "
            f"| {fmt(row.get('x_unetkit-eager-fp32'))} |"
        )
    for key in ("agreement", "curves"):
        if record.get(key):
            lines += ["", f"{key}: `{json.dumps(record[key])}`"]
    return "\n".join(lines) + "\n"


def parent_main(args: argparse.Namespace) -> int:
    base = {"threads": args.threads, "allocator": args.allocator}
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": args.threads,
        "allocator": args.allocator,
        "load_start": list(os.getloadavg()),
        "rows": [],
    }
    print("measuring peaks ...", flush=True)
    record["peaks"] = peaks = run_child({**base, "kind": "peaks"}, args.timeout)
    if "error" in peaks:
        print(f"peaks failed: {peaks['error']}", file=sys.stderr)
        return 1
    conv32, conv16 = peaks["conv_fp32"]["gflops"], peaks["conv_bf16"]["gflops"]
    print(f"conv peak fp32 {conv32:.0f} bf16 {conv16:.0f} GFLOP/s", flush=True)
    for cfg in configs(args):
        name = config_name(cfg)
        for mode, impls in (("infer", args.infer), ("train", args.train)):
            results: dict[str, dict[str, Any]] = {}
            for impl in impls:
                if impl == "unetkit-compile" and not (
                    args.compile and cfg["spatial_dims"] == 2 and cfg["width"] == max(args.widths)
                ):
                    continue
                case = {
                    **base,
                    **cfg,
                    "kind": "model",
                    "mode": mode,
                    "impl": impl,
                    "repeats": args.repeats,
                    "warmup": args.warmup,
                }
                r = run_child(case, args.timeout)
                results[impl] = r
                row: dict[str, Any] = {"case": name, "mode": mode, "impl": impl, "result": r}
                if "error" not in r:
                    row["share_fp32"] = 100 * r["gflops_per_s"] / conv32
                    row["share_bf16"] = 100 * r["gflops_per_s"] / conv16
                    if r.get("precision") == "int8" and peaks.get("conv_int8_gops"):
                        row["share_int8"] = 100 * r["gflops_per_s"] / peaks["conv_int8_gops"]
                record["rows"].append(row)
                msg = r.get("error") or (
                    f"{r['img_per_s']:.3f} img/s (spread {100 * r['timing']['spread']:.0f}%), "
                    f"{r['peak_over_base_mb']:.0f} MB"
                )
                print(f"{name:28s} {mode:5s} {impl:22s} {msg}", flush=True)
            for row in record["rows"]:
                if row["case"] != name or row["mode"] != mode or "error" in row["result"]:
                    continue
                for peer in PEERS:
                    p = results.get(peer)
                    if p and "error" not in p:
                        row[f"x_{peer}"] = row["result"]["img_per_s"] / p["img_per_s"]
    if args.agreement_steps > 0:
        print("agreement on real images ...", flush=True)
        record["agreement"] = run_child(
            {**base, "kind": "agreement", "steps": args.agreement_steps}, args.timeout
        )
        print(json.dumps(record["agreement"]), flush=True)
    if args.curve_steps > 0:
        print("fp32 vs bf16 training curves ...", flush=True)
        record["curves"] = run_child(
            {**base, "kind": "curves", "steps": args.curve_steps}, args.timeout
        )
        print(json.dumps(record["curves"]), flush=True)
    record["load_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(record, indent=1) + "\n")
    table = markdown(record)
    (args.out / "latest.md").write_text(table)
    print()
    print(table)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=256, help="2D image side")
    p.add_argument("--size-3d", type=int, default=64, help="3D volume side (batch 1, width 16)")
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--infer", nargs="*", default=None, help="inference implementations")
    p.add_argument("--train", nargs="*", default=None, help="training implementations")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow)")
    p.add_argument("--no-3d", action="store_true")
    p.add_argument("--allocator", choices=("default", "tuned"), default="default")
    p.add_argument("--agreement-steps", type=int, default=300)
    p.add_argument("--curve-steps", type=int, default=150)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repeat")
    args = p.parse_args(argv)
    from impls import INFER_IMPLS, TRAIN_IMPLS

    args.infer = args.infer if args.infer is not None else list(INFER_IMPLS)
    args.train = args.train if args.train is not None else list(TRAIN_IMPLS)
    if args.quick:
        args.size, args.size_3d, args.batch, args.widths = 64, 32, 2, [8]
        args.repeats, args.warmup = 1, 0
        args.agreement_steps, args.curve_steps = 10, 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    return parent_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
