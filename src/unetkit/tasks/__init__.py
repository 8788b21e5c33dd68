"""What the network learns: one trainer, one ``UNet``, a task object per ``RunConfig.task``.

The trainer (:mod:`unetkit.train.step`, :mod:`unetkit.train.trainer`) knows nothing about
classes, targets or noise. Everything that differs between tasks goes through one object, an
:class:`Objective`, built once per run by :func:`make_objective` from ``config.task``:

``objective.batches``
    The batch source: ``batches.batch(epoch, index)`` (this rank's share of a global batch, a
    pure function of ``(seed, epoch, index)``, so resumes are exact; of whatever type the same
    task's ``inputs`` takes: segment's :class:`~unetkit.train.loader.TorchBatch`, restore's
    :class:`~unetkit.tasks.restore_data.RestoreBatch`) and ``batches.stems(epoch, index) ->
    list[str]`` (names for error messages).

``objective.inputs(batch) -> TaskBatch``  (a: how a batch becomes network input and target)
    ``TaskBatch.inputs (B, C_in, *S)`` goes into the network, ``TaskBatch.conditioning`` (a
    dict of tensors, empty for segment/restore) is passed to the forward as keyword arguments
    (``model(x, **conditioning)``; diffusion: the noise level and class), and
    ``TaskBatch.target`` / ``TaskBatch.weights`` go to the loss. Called right after the
    step's ``torch.manual_seed(step_seed(seed, step, rank))``: any randomness drawn here from
    torch's global generator (blind-spot masks, noise levels) is reproduced on resume.

``objective.loss(outputs, batch) -> Tensor``  (b: the loss)
    ``outputs``: the network's fp32 output ``(B, C_out, *S)``, or the deep-supervision list
    (full resolution first) when ``model.deep_supervision``. Returns a scalar.

``objective.validate(model, samples, info, *, precision, channels_last, keep_predictions)``
    (c: validation metrics, and which is "best") returns a
    :class:`~unetkit.train.validate.ValResult`: ``loss``, the task's ``extra`` columns for
    ``metrics.csv`` (``{"val_psnr": ..., "val_ssim": ...}``) and ``score``, the one number
    the trainer keeps the best model by (higher is better; segment: mean foreground Dice,
    restore: PSNR). ``objective.score_name`` names it for messages. Every rank returns the
    same numbers (sums are all-reduced).

``objective.metadata() -> dict``
    Entries added to the model file's ``extra`` metadata (restore: ``task`` and how targets
    were normalised, so prediction can undo it). Segment adds nothing, so its model files are
    unchanged.

Adding a task: a module here with a class that has these members, one line in
:func:`make_objective`. The network gets no per-task subclass: a task changes the number of
output channels (``model.out_channels``) and what the output means, never the blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unetkit.tasks.base import BatchSource, Objective, TaskBatch

if TYPE_CHECKING:
    from unetkit.config import RunConfig
    from unetkit.train.distributed import DistInfo
    from unetkit.train.prepare import PreparedData


def make_objective(config: RunConfig, prepared: PreparedData, info: DistInfo) -> Objective:
    """The :class:`Objective` of ``config.task`` for this run's data and process."""
    if config.task == "segment":
        from unetkit.tasks.segment import SegmentObjective

        return SegmentObjective(config, prepared, info)
    if config.task == "restore":
        from unetkit.tasks.restore import RestoreObjective
        from unetkit.tasks.restore_data import RestorePrepared

        if not isinstance(prepared, RestorePrepared):
            raise ValueError("task=restore: prepare the data with prepare_restore(config)")
        return RestoreObjective(config, prepared, info)
    if config.task == "diffusion":
        from unetkit.tasks.diffusion import DiffusionObjective
        from unetkit.tasks.diffusion_data import DiffusionPrepared

        if not isinstance(prepared, DiffusionPrepared):
            raise ValueError("task=diffusion: prepare the data with prepare_diffusion(config)")
        return DiffusionObjective(config, prepared, info)
    raise ValueError(f"task={config.task}: not available in this version; use task=segment")


__all__ = ["BatchSource", "Objective", "TaskBatch", "make_objective"]
