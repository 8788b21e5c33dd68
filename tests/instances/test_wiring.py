"""Instances end to end: a dataset with instances/ trains on the boundary target, the model
keeps the dataset's class map, predict/evaluate --instances write and score objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unetkit.config import DataConfig, RunConfig, TrainConfig
from unetkit.data import make_synthetic
from unetkit.data.dataset import check_dataset, load_dataset
from unetkit.errors import DataError
from unetkit.infer.instances import predict_instances
from unetkit.infer.predictor import predict
from unetkit.instances.training import to_boundary_samples, wants_boundary
from unetkit.io.images import read_mask, write_image, write_mask
from unetkit.model import UNetConfig
from unetkit.modelfile import load_with_metadata
from unetkit.train.prepare import model_metadata, prepare_data
from unetkit.workflow import fit


def _touching(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two touching 8x8 squares (ids 1, 2) and an isolated one (id 3); image brighter inside."""
    inst = np.zeros((size, size), np.int64)
    inst[4:12, 4:12] = 1
    inst[4:12, 12:20] = 2
    inst[20:28, 20:28] = 3
    image = np.where(inst > 0, 200.0, 20.0)
    return image, inst


def _dataset(root: Path, n: int = 6, size: int = 32) -> Path:
    for sub in ("images", "masks", "instances"):
        (root / sub).mkdir(parents=True)
    for s in make_synthetic(n, size=size, seed=3):
        write_image(root / "images" / f"{s.stem}.png", np.round(s.image * 100).astype(np.uint8))
        write_mask(root / "masks" / f"{s.stem}.png", s.mask)
        write_mask(root / "instances" / f"{s.stem}.png", s.instances)
    return root


def test_boundary_samples_of_touching_squares() -> None:
    from unetkit.data.sample import Sample

    image, inst = _touching()
    s = Sample(image[None].astype(np.float32), (inst > 0).astype(np.int64), inst, "a")
    (t,) = to_boundary_samples([s])
    # width 2: two columns on each side of the contact are border, the rest interior
    assert set(np.unique(t.mask)) == {0, 1, 2}
    assert (t.mask[4:12, 10:14] == 2).all() and (t.mask[4:12, 4:10] == 1).all()
    assert (t.mask[20:28, 20:28] == 1).all()  # isolated: no border
    assert np.array_equal(t.instances, inst)
    # without ids, components of the mask: the two squares are one object, no border
    (u,) = to_boundary_samples([Sample(s.image, s.mask, None, "b")])
    assert set(np.unique(u.mask)) == {0, 1}


def test_contour_samples_ring_every_object() -> None:
    from unetkit.data.sample import Sample

    image, inst = _touching()
    s = Sample(image[None].astype(np.float32), (inst > 0).astype(np.int64), inst, "a")
    (t,) = to_boundary_samples([s], border="contour")
    # the isolated square gets a 2-pixel rim and a 4x4 core; the contact is border as before
    iso = t.mask[20:28, 20:28]
    assert (iso[2:6, 2:6] == 1).all() and (iso[:2] == 2).all() and (iso[:, -2:] == 2).all()
    assert (t.mask[4:12, 10:14] == 2).all()
    assert (t.mask[inst == 0] == 0).all()
    # without ids, the two touching squares are one object: ringed, but not parted
    (u,) = to_boundary_samples([Sample(s.image, s.mask, None, "b")], border="contour")
    assert (u.mask[6:10, 10:14] == 1).all()


def test_wants_boundary_rules() -> None:
    from unetkit.data.sample import Sample

    image, inst = _touching()
    with_ids = [Sample(image[None].astype(np.float32), (inst > 0).astype(np.int64), inst, "a")]
    without = [Sample(with_ids[0].image, with_ids[0].mask, None, "a")]
    assert wants_boundary("auto", with_ids, 2, "d")
    assert not wants_boundary("auto", without, 2, "d")
    assert not wants_boundary("auto", with_ids, 2, "d", folder=False)  # synthetic data
    assert wants_boundary("boundary", without, 2, "d")
    assert wants_boundary("contour", without, 2, "d")
    assert not wants_boundary("none", with_ids, 2, "d")
    assert not wants_boundary("auto", with_ids, 3, "d")
    with pytest.raises(DataError, match="instance_target=boundary needs binary masks"):
        wants_boundary("boundary", with_ids, 3, "d")


def test_reused_id_is_a_warning_per_file_and_split(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", n=2)
    stem = sorted(p.stem for p in (root / "images").iterdir())[0]
    inst = read_mask(root / "instances" / f"{stem}.png")
    mask = read_mask(root / "masks" / f"{stem}.png")
    inst[0:2, 0:2] = 200
    inst[-2:, -2:] = 200  # id 200 in two separate corners
    mask[0:2, 0:2] = mask[-2:, -2:] = 1
    write_mask(root / "instances" / f"{stem}.png", inst)
    write_mask(root / "masks" / f"{stem}.png", mask)
    report = check_dataset(root)
    assert report.ok
    (warning,) = [w for w in report.warnings if "disconnected" in w]
    assert f"instances/{stem}.png" in warning and "id 200 (2 pieces)" in warning
    sample = next(s for s in load_dataset(root) if s.stem == stem)
    assert sample.instances is not None
    assert sample.instances[0, 0] != sample.instances[-1, -1] and sample.instances[0, 0] > 0


def test_non_integer_instance_truth_is_a_problem(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", n=2)
    stem = sorted(p.stem for p in (root / "images").iterdir())[0]
    (root / "instances" / f"{stem}.png").unlink()
    bad = read_mask(
        root / "instances" / f"{sorted(p.stem for p in (root / 'images').iterdir())[1]}.png"
    )
    write_image(root / "instances" / f"{stem}.tif", (bad.astype(np.float32) + 0.5)[None])
    report = check_dataset(root)
    assert len(report.problems) == 1 and f"instances/{stem}.tif" in report.problems[0]
    assert "non-integer" in report.problems[0]


def test_prepare_data_switches_to_the_boundary_target(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    prepared = prepare_data(DataConfig(path=str(root)))
    assert prepared.num_classes == 3 and prepared.instance_spec is not None
    assert prepared.instance_spec.border == "contour"  # what auto picks
    assert all(set(np.unique(s.mask)) <= {0, 1, 2} for s in prepared.train + prepared.val)
    assert prepared.raw_val and all(s.instances is not None for s in prepared.raw_val)
    meta = model_metadata(DataConfig(path=str(root)), prepared, (32, 32))
    assert meta["num_classes"] == 2 and meta["instances"]["class_of_channel"] == [0, 1, 1]
    touching = prepare_data(DataConfig(path=str(root), instance_target="boundary"))
    assert touching.instance_spec is not None and touching.instance_spec.border == "touching"
    assert (touching.train[0].mask == 2).sum() < (prepared.train[0].mask == 2).sum()
    plain = prepare_data(DataConfig(path=str(root), instance_target="none"))
    assert plain.num_classes == 2 and plain.instance_spec is None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run trained on a dataset with instances/ (a few steps: the wiring, not quality)."""
    root = tmp_path_factory.mktemp("inst")
    data = _dataset(root / "data", n=6, size=32)
    config = RunConfig(
        model=UNetConfig(widths=(4, 8)),
        data=DataConfig(path=str(data), patch_size=(32, 32)),
        train=TrainConfig(epochs=2, steps_per_epoch=2, batch_size=2, threads=1),
    )
    said: list[str] = []
    fit(config, root / "run", echo=said.append)
    assert any(line.startswith("instances: post-processing tuned on") for line in said), said
    return root / "run", data


def test_trained_model_stores_spec_and_keeps_the_class_map(run: tuple[Path, Path]) -> None:
    run_dir, data = run
    model, meta = load_with_metadata(run_dir)
    assert model.config.out_channels == 3 and meta["num_classes"] == 2
    assert set(meta["instances"]["params"]) == {
        "seed_threshold", "foreground_threshold", "min_seed_size", "min_size", "split_distance",
    }  # fmt: skip
    image = load_dataset(data)[0].image
    labels = predict(model, image, metadata=meta)
    assert set(np.unique(labels)) <= {0, 1}  # the dataset's classes, not the 3 channels
    result = predict_instances(model, image, metadata=meta, tta=False)
    assert result.labels.dtype == np.uint16 and result.class_map.shape == labels.shape
    assert np.array_equal(result.class_map, labels)
    # instances average over the image's symmetries by default, like predict(tta=True)
    averaged = predict_instances(model, image, metadata=meta)
    assert np.array_equal(averaged.class_map, predict(model, image, metadata=meta, tta=True))


def test_predict_and_evaluate_instances_cli(cli, run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, data = run
    out = tmp_path / "pred"
    r = cli("predict", "--model", str(run_dir), "--input", str(data), "--out", str(out),
            "--instances", "--tile", "16", "--min-size", "0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    stems = sorted(p.stem for p in (data / "images").iterdir())
    assert sorted(p.name for p in out.iterdir() if p.name[0] != ".") == sorted(
        [f"{s}_instances.png" for s in stems] + [f"{s}_objects.csv" for s in stems]
    )
    manifest = json.loads((out / ".unetkit-predict.json").read_text())
    assert f"{stems[0]}_objects.csv" in manifest["outputs"]
    labels = read_mask(out / f"{stems[0]}_instances.png")
    rows = (out / f"{stems[0]}_objects.csv").read_text().splitlines()
    assert rows[0].startswith("id,class,area,centroid_y,centroid_x,bbox_start_y")
    assert len(rows) - 1 == len(np.unique(labels[labels > 0]))
    again = cli("predict", "--model", str(run_dir), "--input", str(data), "--out", str(out),
                "--instances", "--tile", "16", "--min-size", "0")  # fmt: skip
    assert again.returncode == 0 and "skipped" in again.stdout
    report = tmp_path / "scores.json"
    r = cli("evaluate", "--instances", "--pred", str(out), "--truth", str(data),
            "--json", str(report))  # fmt: skip
    assert r.returncode == 0, r.stderr
    scores = json.loads(report.read_text())
    assert len(scores["per_image"]) == len(stems) and 0.0 <= scores["overall"]["dsb"] <= 1.0
    r = cli("evaluate", "--instances", "--model", str(run_dir), "--data", str(data))
    assert r.returncode == 0, r.stderr
    assert "overall" in r.stdout and "dsb" in r.stdout


def test_evaluate_instances_of_the_truth_scores_one(cli, tmp_path: Path) -> None:
    data = _dataset(tmp_path / "d", n=2)
    csv = tmp_path / "s.csv"
    r = cli("evaluate", "--instances", "--pred", str(data / "instances"), "--truth", str(data),
            "--csv", str(csv))  # fmt: skip
    assert r.returncode == 0, r.stderr
    last = csv.read_text().splitlines()[-1].split(",")
    assert last[0] == "overall" and float(last[1]) == 1.0


def test_model_without_instance_target_is_refused_unless_asked(
    cli, run: tuple[Path, Path], tmp_path: Path
) -> None:
    from unetkit.modelfile import save

    run_dir, data = run
    model, meta = load_with_metadata(run_dir)
    plain = {k: v for k, v in meta.items() if k != "instances"}
    path = save(model, tmp_path / "plain.safetensors", metadata=plain)
    out = tmp_path / "pred"
    r = cli("predict", "--model", str(path), "--input", str(data), "--out", str(out),
            "--instances")  # fmt: skip
    assert r.returncode == 2 and "trained without an instance target" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    r = cli("predict", "--model", str(path), "--input", str(data), "--out", str(out),
            "--instances", "--instances-fallback", "components")  # fmt: skip
    assert r.returncode == 0, r.stderr
