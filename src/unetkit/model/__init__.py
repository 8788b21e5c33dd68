"""The network alone: config, layers, blocks, encoder, decoder, U-Net, its walk, summary, presets.

Imports nothing from the rest of unetkit.
"""

from unetkit.model.config import UNetConfig
from unetkit.model.registry import create_model, list_models, preset_config
from unetkit.model.summary import ModelSummary, count_parameters, summarize
from unetkit.model.unet import UNet
from unetkit.model.walk import Point

__all__ = [
    "ModelSummary",
    "Point",
    "UNet",
    "UNetConfig",
    "count_parameters",
    "create_model",
    "list_models",
    "preset_config",
    "summarize",
]
