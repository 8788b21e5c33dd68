"""Tracking: TensorBoard and MLflow get the same records as metrics.csv, locally, offline."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import pytest

from unetkit.config import RunConfig, TrainConfig
from unetkit.errors import UnetkitError
from unetkit.train.tracking import Tracker, check_tracking, mlflow_uri
from unetkit.workflow import fit

TINY = [
    "model.widths=[4,8]",
    "data.synthetic_count=6",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.threads=1",
    "train.epochs=2",
    "train.int8_calibration=false",
]


def _csv(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_tensorboard_and_mlflow_get_the_metrics_csv_records_offline(
    tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    run = tmp_path / "run"
    fit(None, run, overrides=[*TINY, "train.tracking=[tensorboard,mlflow]"], quiet=True)
    rows = _csv(run)
    assert len(rows) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    dice = [(e.step, e.value) for e in events.Scalars("val_dice")]
    assert dice == [(int(r["step"]), pytest.approx(float(r["val_dice"]), abs=1e-5)) for r in rows]
    assert events.Tags()["images"]  # the overlays of the best epochs
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("unetkit").experiment_id])
    history = client.get_metric_history(found.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [
        (int(r["step"]), pytest.approx(float(r["train_loss"]), abs=1e-5)) for r in rows
    ]
    assert found.data.params["model.widths"] == "[4, 8]"
    assert found.info.status == "FINISHED"
    assert attempts == []


def test_remote_tracking_uri_is_refused_and_local_ones_resolve(tmp_path: Path) -> None:
    remote = RunConfig(train=TrainConfig(tracking=("mlflow",), tracking_uri="http://host:5000"))
    with pytest.raises(UnetkitError, match="is not local"):
        mlflow_uri(remote, tmp_path)
    local = RunConfig(train=TrainConfig(tracking=("mlflow",), tracking_uri="here/mlruns"))
    assert mlflow_uri(local, tmp_path).startswith("file:///")
    assert mlflow_uri(RunConfig(), tmp_path) == (tmp_path.resolve() / "mlruns").as_uri()


def test_missing_package_is_named_before_the_run_starts(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    config = RunConfig(train=TrainConfig(tracking=("tensorboard",)))
    with pytest.raises(UnetkitError, match=r"pip install 'unetkit\[tensorboard\]'"):
        check_tracking(config, tmp_path)


def test_unknown_tracking_name_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="tracking: expected a list of tensorboard, mlflow"):
        TrainConfig(tracking=("wandb",))


def test_a_failing_sink_is_dropped_and_the_others_go_on(caplog) -> None:
    class Broken:
        def log_row(self, row: object, step: int) -> None:
            raise RuntimeError("disk full")

        def close(self) -> None:
            pass

    class Kept:
        def __init__(self) -> None:
            self.rows: list[int] = []

        def log_row(self, row: object, step: int) -> None:
            self.rows.append(step)

        def close(self) -> None:
            pass

    tracker = Tracker(RunConfig(), Path("."))
    kept = Kept()
    tracker.sinks = {"tensorboard": Broken(), "mlflow": kept}  # type: ignore[dict-item]
    tracker.log_epoch({"val_dice": 0.5}, 3)
    tracker.log_epoch({"val_dice": 0.6}, 6)
    assert list(tracker.sinks) == ["mlflow"] and kept.rows == [3, 6]
    assert "tracking: tensorboard disabled: disk full" in caplog.text
