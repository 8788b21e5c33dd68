"""Make ``catalogue`` (the shared table of bad-input cases) importable by this folder's tests."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
