"""unetkit: U-Nets for dense prediction on 1D signals, 2D images and 3D volumes."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
