"""TorchScript export by tracing, and running the saved module."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn


def write_torchscript(model: nn.Module, example: Tensor, path: Path) -> None:
    """Trace ``model`` on ``example (B, C, *S)`` and save it to ``path``."""
    traced = torch.jit.trace(model, (example,), check_trace=False)
    traced = torch.jit.freeze(traced.eval())
    torch.jit.save(traced, str(path))


def run_torchscript(path: Path, x: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Load a saved TorchScript module on ``device`` and run it: ``(B, C, *S) -> (B, K,
    *S_out)`` (a NumPy array on the host)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.13
        module = torch.jit.load(str(path), map_location=torch.device(device))
    with torch.inference_mode():
        x_t = torch.from_numpy(x.astype(np.float32)).to(device)
        return module(x_t).float().cpu().numpy()
