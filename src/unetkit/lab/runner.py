"""Run lab experiments by name and write their outputs."""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

from unetkit.lab.common import ExperimentResult, LabSettings
from unetkit.lab.report import write_report, write_result

log = logging.getLogger("unetkit.lab")

# Command-line name -> module in unetkit.lab, in report order.
EXPERIMENTS: dict[str, str] = {
    "spike": "spike",
    "spectrum": "spectrum",
    "gradients": "gradients",
    "concat-cost": "concat_cost",
    "normalization": "normalization",
    "memory": "memory",
    "alignment": "alignment",
    "touching": "touching",
    "denoiser": "denoiser",
}


def run_experiment(name: str, settings: LabSettings) -> ExperimentResult:
    """Run one experiment (a key of :data:`EXPERIMENTS`) and return its result."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"experiment: unknown name {name!r}; one of: {', '.join(EXPERIMENTS)}, all"
        )
    module = importlib.import_module(f"unetkit.lab.{EXPERIMENTS[name]}")
    return module.run(settings)


def run_and_write(names: list[str], out: Path, settings: LabSettings) -> list[Path]:
    """Run ``names`` in order, writing each one's files as soon as it finishes.

    With more than one name, also writes ``out/report.md``. Returns the paths written.
    """
    written: list[Path] = []
    results: list[ExperimentResult] = []
    seconds: dict[str, float] = {}
    for name in names:
        log.info("lab: running %s%s", name, " (quick)" if settings.quick else "")
        start = time.perf_counter()
        result = run_experiment(name, settings)
        seconds[name] = time.perf_counter() - start
        written += write_result(result, out, settings)
        results.append(result)
        log.info("lab: %s (%.0f s): %s", name, seconds[name], result.headline)
    if len(names) > 1:
        written.append(write_report(results, out, settings, seconds))
    return written
