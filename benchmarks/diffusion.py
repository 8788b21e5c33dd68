"""Class-conditional digits: unetkit's denoiser against diffusers' ``UNet2DModel`` + DDPM.

Both train for the same wall-clock minutes on the same CPU threads, from seed 0, on the
digits' training split at 16x16 (:mod:`unetkit.tasks.diffusion_data`), with the same batch
(64), optimiser (AdamW, lr 1e-3, gradient clip 1), label dropout (0.1) and weight EMA (0.999,
:mod:`unetkit.train.ema`), and are scored the same way
(:func:`unetkit.diffusion.evaluation.score_samples`: Fréchet distance in the digit
classifier's features to the held-out digits, conditional accuracy, nearest-training distance),
each on ``--samples`` images (classes in turn) drawn with 50 DDIM steps.

* unetkit: ``UNet`` with ``time_conditioning``, 10 classes, widths (32, 64, 128), attention at
  level 2, group norm, SiLU (the ``task=diffusion`` recipe); cosine schedule, v-prediction;
  sampled with unetkit's DDIM. 0.64 M parameters.
* diffusers (the peer, configured as its documentation describes class conditioning):
  ``UNet2DModel`` with ``block_out_channels=(16, 32, 64)`` and ``layers_per_block=1``, chosen
  so that its parameter count (0.69 M) matches unetkit's (its blocks hold two resnets per
  level on the way up and a 4x wider time embedding, so equal widths would give it 4x the
  parameters: 2.7 M at (32, 64, 128)); ``DownBlock2D, DownBlock2D, AttnDownBlock2D`` and the
  mirrored up blocks (attention at the lowest level, as unetkit), ``norm_num_groups=8``,
  ``num_class_embeds=11`` (10 digits + a null class for label dropout) with the default
  ``class_embed_type=None`` (a learned class embedding added to the time embedding); its
  ``DDPMScheduler`` defaults (1000 steps, linear betas, epsilon prediction) for training and
  ``DDIMScheduler.from_config`` of it for sampling.

Then unetkit's DDIM with ``--ddim-steps`` against its DDPM ancestral sampler over all 1000
steps, from the same trained model, on the same labels (``--ddpm-samples``, default: all
``--samples``; 1000 network calls per batch of 256: about 5 minutes for 500 on 2 quiet
cores, 31 minutes on the shared machine of the measurement in benchmarks/README.md).

    python benchmarks/diffusion.py --minutes 8 --samples 500 --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.diffusion.evaluation import score_samples
from unetkit.diffusion.generate import Denoiser, generate
from unetkit.diffusion.schedule import NoiseSchedule
from unetkit.diffusion.training import diffusion_loss, noised_batch
from unetkit.model import UNet, UNetConfig
from unetkit.tasks.diffusion_data import digits_split, load_digits
from unetkit.train.ema import ema_copy, update_ema

SIZE, BATCH, LR, DROP, DECAY = 16, 64, 1e-3, 0.1, 0.999


def batches(seed: int):
    images, labels = load_digits(SIZE)
    train, _ = digits_split(len(images))
    x, y = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x) - BATCH + 1, BATCH):
            idx = order[s : s + BATCH]
            yield x[idx], y[idx]


def train_for(model, step_fn, minutes: float) -> tuple[torch.nn.Module, int]:
    """Steps of ``step_fn(model, x, y) -> loss`` until ``minutes`` pass; EMA copy, steps."""
    opt = torch.optim.AdamW(model.parameters(), LR)
    end, steps = time.monotonic() + minutes * 60, 0
    for x, y in batches(0):
        loss = step_fn(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        update_ema(model, opt, DECAY)
        steps += 1
        if time.monotonic() > end:
            break
    return ema_copy(model, opt).eval(), steps


def unetkit_model() -> tuple[UNet, NoiseSchedule]:
    torch.manual_seed(0)
    config = UNetConfig(
        in_channels=1, out_channels=1, widths=(32, 64, 128), norm="group", act="silu",
        time_conditioning=True, num_class_labels=10, attention_levels=(2,),
    )  # fmt: skip
    return UNet(config), NoiseSchedule.make("cosine", 1000)


def diffusers_model():
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    net = UNet2DModel(
        sample_size=SIZE, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(16, 32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        num_class_embeds=11, norm_num_groups=8,
    )  # fmt: skip
    return net, DDPMScheduler(num_train_timesteps=1000)


def diffusers_step(sched):
    def step(net, x, y):
        t = torch.randint(1000, (len(x),))
        noise = torch.randn_like(x)
        y = torch.where(torch.rand(len(y)) < DROP, torch.full_like(y, 10), y)
        out = net(sched.add_noise(x, noise, t), t, class_labels=y).sample
        return F.mse_loss(out, noise)

    return step


@torch.no_grad()
def diffusers_sample(net, train_sched, labels, steps: int, guidance: float, seed: int):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(train_sched.config)
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), 1, SIZE, SIZE), generator=g)
    null = torch.full_like(labels, 10)
    for t in sched.timesteps:
        tt = torch.full((len(x),), int(t))
        if guidance == 1.0:
            eps = net(x, tt, class_labels=labels).sample
        else:
            both = net(
                torch.cat([x, x]), torch.cat([tt, tt]), class_labels=torch.cat([labels, null])
            )
            c, u = both.sample.chunk(2)
            eps = u + guidance * (c - u)
        x = sched.step(eps, t, x).prev_sample
    return x.clamp(-1, 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="training minutes per model")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--ddpm-samples", type=int, default=-1, help="-1: --samples")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: as set)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    labels = torch.arange(args.samples) % 10
    results: dict[str, dict] = {}

    net, schedule = unetkit_model()

    def ours_step(model, x, y):
        nb = noised_batch(schedule, x, y, prediction="v", label_dropout=DROP, null_label=10)
        return diffusion_loss(model, nb)

    ema, steps = train_for(net, ours_step, args.minutes)
    info = {"prediction": "v", "num_labels": 10, "image_size": [SIZE, SIZE]}
    d = Denoiser(ema, schedule, info)
    t0 = time.monotonic()
    imgs = generate(d, args.samples, steps=args.ddim_steps, labels=labels, guidance=args.guidance)
    q = score_samples(imgs, labels.numpy(), SIZE)
    results["unetkit"] = {"steps": steps, "params": sum(p.numel() for p in ema.parameters()),
                          "sample_seconds": time.monotonic() - t0, **q.to_json()}  # fmt: skip
    print("unetkit", json.dumps(results["unetkit"]), flush=True)

    theirs, sched = diffusers_model()
    ema_d, steps_d = train_for(theirs, diffusers_step(sched), args.minutes)
    t0 = time.monotonic()
    imgs_d = diffusers_sample(ema_d, sched, labels, args.ddim_steps, args.guidance, 0)
    qd = score_samples(imgs_d.astype(np.float32), labels.numpy(), SIZE)
    results["diffusers"] = {"steps": steps_d, "params": sum(p.numel() for p in ema_d.parameters()),
                            "sample_seconds": time.monotonic() - t0, **qd.to_json()}  # fmt: skip
    print("diffusers", json.dumps(results["diffusers"]), flush=True)

    if args.ddpm_samples:
        n = args.samples if args.ddpm_samples < 0 else min(args.ddpm_samples, args.samples)
        sub = labels[:n]
        t0 = time.monotonic()
        ddpm = generate(d, n, sampler="ddpm", labels=sub, guidance=args.guidance)
        seconds = time.monotonic() - t0
        # DDIM: the first n images drawn above (the same labels)
        for name, im in ((f"unetkit-ddim{args.ddim_steps}", imgs[:n]), ("unetkit-ddpm1000", ddpm)):
            results[name] = score_samples(im, sub.numpy(), SIZE).to_json()
            print(name, json.dumps(results[name]), flush=True)
        results["unetkit-ddpm1000"]["sample_seconds"] = seconds

    print(f"digits 16x16, class-conditional, {args.minutes} min training each (shared CPU)")
    print(f"{'':18} {'steps':>6} {'params':>8} {'FD':>8} {'FD real':>8} {'acc':>6} {'near':>6}")
    for name, r in results.items():
        print(
            f"{name:18} {r.get('steps', ''):>6} {r.get('params', ''):>8} {r['fd']:8.3f} "
            f"{r['fd_real']:8.3f} {r['accuracy']:6.3f} {r['nearest_train']:6.3f}"
        )
    print(f"FD ratio diffusers / unetkit: {qd.fd / q.fd:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
