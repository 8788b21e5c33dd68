"""Optional experiment tracking: the rows of ``metrics.csv`` also go to TensorBoard and MLflow.

``train.tracking: [tensorboard, mlflow]`` (off by default). The sinks are fed from the same
records as ``metrics.csv``, right after it is written, never instead of it. Both stay on this
machine: TensorBoard writes event files to ``<run>/tensorboard``; MLflow logs to
``train.tracking_uri``, a local folder / ``file:`` URI (default ``<run>/mlruns``) or a local
``sqlite:`` database, never a server. Each also gets the resolved config (TensorBoard as text,
MLflow as parameters and ``config.yaml``) and the validation overlays of each new best epoch.

A sink that fails while the run trains is closed with a warning; training goes on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from unetkit.config import RunConfig
from unetkit.errors import UnetkitError

log = logging.getLogger(__name__)

_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
LOCAL_SCHEMES = ("file:", "sqlite:")


class Sink(Protocol):
    """Where a run's records go besides ``metrics.csv``."""

    def log_row(self, row: Mapping[str, Any], step: int) -> None:
        """One epoch's record (the ``metrics.csv`` row)."""

    def log_images(self, paths: Sequence[Path], step: int) -> None:
        """PNG images (validation overlays) at ``step``."""

    def close(self) -> None:
        """Flush and finish."""


def mlflow_uri(config: RunConfig, out: Path) -> str:
    """The local MLflow tracking URI of a run; a remote one is refused (offline-safe)."""
    uri = config.train.tracking_uri
    if uri is None:
        return (Path(out).resolve() / "mlruns").as_uri()
    if uri.startswith(LOCAL_SCHEMES):
        return uri
    if "://" in uri:
        raise UnetkitError(
            f"train.tracking_uri: {uri} is not local; unetkit tracks offline only: give a "
            f"folder, a file: URI or a sqlite: database"
        )
    return Path(uri).resolve().as_uri()


def check_tracking(config: RunConfig, out: Path) -> None:
    """Before anything is written: every requested sink's package is installed and the
    MLflow URI is local."""
    for name in config.train.tracking:
        module, extra = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UnetkitError(
                f"train.tracking: {name} needs the '{module}' package: "
                f"pip install 'unetkit[{extra}]'"
            )
    if "mlflow" in config.train.tracking:
        mlflow_uri(config, out)


def _numbers(row: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or key in ("epoch", "step"):
            continue
        if isinstance(value, int | float) and value == value:  # NaN left out
            out[key] = float(value)
    return out


def _flat(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, Mapping):
        flat: dict[str, str] = {}
        for k, v in data.items():
            flat.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: str(data)[:500]}


class TensorBoardSink:
    """Scalars, the config as text and overlays as images, in ``<run>/tensorboard``."""

    def __init__(self, config: RunConfig, out: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(out) / "tensorboard"))
        self.writer.add_text("config", "```\n" + config.to_yaml() + "\n```", 0)

    def log_row(self, row: Mapping[str, Any], step: int) -> None:
        for key, value in _numbers(row).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_images(self, paths: Sequence[Path], step: int) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(f"overlays/{path.stem}", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowSink:
    """One MLflow run (experiment ``unetkit``): parameters, metrics, config.yaml, overlays."""

    def __init__(self, config: RunConfig, out: Path) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "true")
        uri = mlflow_uri(config, out)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # local, no database
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name("unetkit")
        eid = experiment.experiment_id if experiment else self.client.create_experiment("unetkit")
        self.run_id = self.client.create_run(eid, run_name=Path(out).name).info.run_id
        from unetkit.configtools import to_dict

        params = [Param(k, v) for k, v in sorted(_flat(to_dict(config)).items())]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        config_file = Path(out) / "config.yaml"
        if config_file.is_file():
            self.client.log_artifact(self.run_id, str(config_file))

    def log_row(self, row: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _numbers(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_images(self, paths: Sequence[Path], step: int) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path=f"overlays/{step}")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Tracker:
    """The requested sinks of one run, fed by :class:`~unetkit.train.epoch_output.EpochWriter`
    (rank 0). A sink that raises is dropped with a warning."""

    def __init__(self, config: RunConfig, out: Path) -> None:
        self.sinks: dict[str, Sink] = {}
        makers = {"tensorboard": TensorBoardSink, "mlflow": MlflowSink}
        for name in config.train.tracking:
            try:
                self.sinks[name] = makers[name](config, out)
            except Exception as exc:  # tracking must never stop training
                log.warning("tracking: %s disabled: %s", name, exc)

    def _each(self, what: str, *args: Any) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                getattr(sink, what)(*args)
            except Exception as exc:
                log.warning("tracking: %s disabled: %s", name, exc)
                self.sinks.pop(name)
                with contextlib.suppress(Exception):
                    sink.close()

    def log_epoch(self, row: Mapping[str, Any], step: int, images: Sequence[Path] = ()) -> None:
        """The newest ``metrics.csv`` row and, on a new best epoch, the overlays."""
        self._each("log_row", row, step)
        if images:
            self._each("log_images", list(images), step)

    def close(self) -> None:
        self._each("close")
        self.sinks.clear()


__all__ = ["MlflowSink", "Sink", "TensorBoardSink", "Tracker", "check_tracking", "mlflow_uri"]
