"""The metrics and train packages must not need scikit-image at runtime."""

from __future__ import annotations

import subprocess
import sys


def test_no_skimage_import() -> None:
    code = (
        "import sys, unetkit.metrics, unetkit.train; "
        "sys.exit(1 if any(m.split('.')[0] == 'skimage' for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
