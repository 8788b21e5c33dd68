"""unetkit: U-Nets for dense prediction on 1D signals, 2D images and 3D volumes.

The public API: the model (:class:`UNet`, :class:`UNetConfig`, :func:`create_model`,
:func:`list_models`, :func:`summarize`), model files (:func:`save`, :func:`load`) and
prediction of a NumPy image of any size (:func:`predict`; many images in shared network calls:
:func:`predict_images`), and a whole training run as
``unetkit train`` does it (:func:`fit`).
"""

from __future__ import annotations

from unetkit.infer import predict
from unetkit.infer.batched import predict_images
from unetkit.infer.instances import predict_instances
from unetkit.model import UNet, UNetConfig, create_model, list_models, summarize
from unetkit.modelfile import load, save
from unetkit.version import __version__
from unetkit.workflow import fit

__all__ = [
    "UNet",
    "UNetConfig",
    "__version__",
    "create_model",
    "fit",
    "list_models",
    "load",
    "predict",
    "predict_images",
    "predict_instances",
    "save",
    "summarize",
]
