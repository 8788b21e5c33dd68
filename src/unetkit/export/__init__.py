"""Export a trained U-Net to ONNX or TorchScript, checked against eager PyTorch.

``export_model(model, path, format, metadata)`` traces the network, writes the file atomically
only after the exported model has been run on random inputs and matched eager PyTorch (ONNX
through onnxruntime), and writes the settings needed to use it beside it as ``<file>.json``
(see :func:`unetkit.export.settings.inference_settings`).

Shapes the export accepts:

* ``same`` padding: dynamic batch and spatial axes; every spatial size must be a multiple of
  the model's ``downsample_factor`` (the export has no pad-and-crop step; pad the input at its
  far end, or use tiles of such sizes, as the settings JSON says).
* ``valid`` padding: dynamic batch; the spatial input size is fixed (the centre crops of the
  skips are sizes in the graph); the settings JSON gives the input size, the output size and the
  overlap-tile margin.
"""

from unetkit.export.core import ExportReport, export_model

__all__ = ["ExportReport", "export_model"]
