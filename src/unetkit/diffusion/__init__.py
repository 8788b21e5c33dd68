"""Diffusion with the U-Net as its denoiser: schedules, the training loss, EMA, samplers.

The network is the ordinary :class:`~unetkit.model.UNet` with ``time_conditioning`` (and
optionally ``num_class_labels``); training runs through the one trainer as ``task=diffusion``
(:mod:`unetkit.tasks.diffusion`). This package holds what is specific to diffusion and
independent of the trainer.
"""

from unetkit.diffusion.options import DiffusionConfig
from unetkit.diffusion.sampling import sample, step_sequence
from unetkit.diffusion.schedule import NoiseSchedule, make_betas

__all__ = ["DiffusionConfig", "NoiseSchedule", "make_betas", "sample", "step_sequence"]
