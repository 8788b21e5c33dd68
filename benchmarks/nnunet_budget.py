"""nnU-Net v2's own 2D trainer, sized to a wall-clock budget on the CPU, then its predictor.

Run with the Python of the nnU-Net venv (``make nnunet-venv``), after
``nnUNetv2_plan_and_preprocess -d ID -c 2d``, with ``nnUNet_raw``, ``nnUNet_preprocessed`` and
``nnUNet_results`` set (``benchmarks/quality.py --nnunet`` does all of it)::

    .venv-nnunet/bin/python benchmarks/nnunet_budget.py --dataset 500 --minutes 10 \\
        --images runs/quality/isbi2012-em/nnunet-10/raw/Dataset500_isbi2012em/imagesTs \\
        --out runs/quality/isbi2012-em/nnunet-10/pred

How the budget is spent (nnU-Net's fixed-length trainers assume a GPU: one of its epochs is
250 training and 50 validation iterations, which on 2 CPU cores can take longer than the whole
budget, and timing a whole epoch to choose one would spend the budget twice):

1. a probe trainer (nnU-Net's plans, batch and patch untouched) times ``--probe`` training
   iterations after one warm-up; this time is not counted;
2. a fresh trainer then gets as many whole epochs of 250 + 50 iterations as fit the budget, so
   its polynomial learning-rate schedule ends at zero when the budget does; when not even one
   fits, one epoch with the training iterations that fit (and validation iterations in
   nnU-Net's 5:1 ratio);
3. nnU-Net's final cross-validation pass (not training) is skipped; prediction on ``--images``
   uses nnU-Net's defaults (Gaussian sliding window at step 0.5, mirroring).

Prints one JSON line: seconds of training and prediction, epochs, iterations per epoch and the
probe's seconds per iteration. nnU-Net is imported here only, never by unetkit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def _trainer(dataset: str, fold: int):  # type: ignore[no-untyped-def]
    from nnunetv2.run.run_training import get_trainer_from_args

    return get_trainer_from_args(dataset, "2d", fold, "nnUNetTrainer", device=torch.device("cpu"))


def seconds_per_iteration(dataset: str, fold: int, probe: int) -> float:
    """Mean time of ``probe`` training iterations of nnU-Net's plan, after one."""
    trainer = _trainer(dataset, fold)
    trainer.on_train_start()
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    trainer.train_step(next(trainer.dataloader_train))
    start = time.monotonic()
    for _ in range(probe):
        trainer.train_step(next(trainer.dataloader_train))
    per_iteration = (time.monotonic() - start) / probe
    for loader in (trainer.dataloader_train, trainer.dataloader_val):
        finish = getattr(loader, "_finish", None)  # background augmentation workers
        if finish is not None:
            finish()
    return per_iteration


def plan_epochs(budget_s: float, per_iteration: float) -> tuple[int, int, int]:
    """``(epochs, training iterations per epoch, validation iterations per epoch)``.

    A validation iteration (forward only) is counted as a third of a training one.
    """
    epoch_s = per_iteration * (250 + 50 / 3)
    if budget_s >= epoch_s:
        return int(budget_s // epoch_s), 250, 50
    train_its = max(1, int(budget_s / (per_iteration * (1 + 1 / 15))))
    return 1, train_its, max(1, train_its // 5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="nnU-Net dataset id or name")
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--images", required=True, help="nnU-Net raw images to predict (imagesTs)")
    p.add_argument("--out", required=True, help="folder for the predicted label PNGs")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--probe", type=int, default=5, help="timed training iterations")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    per_iteration = seconds_per_iteration(args.dataset, args.fold, args.probe)
    epochs, train_its, val_its = plan_epochs(args.minutes * 60, per_iteration)
    trainer = _trainer(args.dataset, args.fold)
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = train_its
    trainer.num_val_iterations_per_epoch = val_its
    start = time.monotonic()
    trainer.run_training()
    train_s = time.monotonic() - start

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False)
    predictor.initialize_from_trained_model_folder(
        str(Path(trainer.output_folder).parent),
        use_folds=(args.fold,),
        checkpoint_name="checkpoint_final.pth",
    )
    start = time.monotonic()
    predictor.predict_from_files(
        args.images,
        args.out,
        save_probabilities=False,
        overwrite=True,
        num_processes_preprocessing=1,
        num_processes_segmentation_export=1,
    )
    predict_s = time.monotonic() - start
    print(
        json.dumps(
            {
                "train_seconds": train_s,
                "predict_seconds": predict_s,
                "epochs": epochs,
                "iterations_per_epoch": train_its,
                "seconds_per_iteration": per_iteration,
            }
        )
    )


if __name__ == "__main__":
    main()
