"""The user's main job end to end: synth -> train -> predict -> evaluate, all through the CLI."""

from __future__ import annotations

import csv
import json


def test_train_predict_evaluate_round_trip(cli, tmp_path) -> None:
    assert (
        cli("synth", str(tmp_path / "train"), "--n", "10", "--size", "64", "--seed", "2").returncode
        == 0
    )
    assert (
        cli("synth", str(tmp_path / "test"), "--n", "3", "--size", "80", "--seed", "9").returncode
        == 0
    )
    run = tmp_path / "run"
    r = cli(
        "train",
        "--data",
        str(tmp_path / "train"),
        "--out",
        str(run),
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--patch-size",
        "48",
        "--seed",
        "0",
        "--quiet",
        "model.widths=[8,16,32]",
    )
    assert r.returncode == 0, r.stderr
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])

    pred = tmp_path / "pred"
    r = cli(
        "predict",
        "--model",
        str(run),
        "--input",
        str(tmp_path / "test"),
        "--out",
        str(pred),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in pred.glob("*.tif")) == [
        "synthetic_0000.tif",
        "synthetic_0001.tif",
        "synthetic_0002.tif",
    ]

    by_model = tmp_path / "by_model.json"
    r = cli(
        "evaluate", "--model", str(run), "--data", str(tmp_path / "test"), "--json", str(by_model)
    )
    assert r.returncode == 0, r.stderr
    by_files = tmp_path / "by_files.json"
    r = cli(
        "evaluate",
        "--pred",
        str(pred),
        "--truth",
        str(tmp_path / "test" / "masks"),
        "--json",
        str(by_files),
    )
    assert r.returncode == 0, r.stderr
    a, b = json.loads(by_model.read_text()), json.loads(by_files.read_text())
    assert {"mean", "per_class", "per_image"} <= set(a)
    assert a["mean"]["dice"] == b["mean"]["dice"]
    # 40 steps of a tiny model on unseen images: clearly better than chance, not perfect.
    assert 0.6 < a["mean"]["dice"] <= 1.0
    assert len(a["per_image"]) == 3
