"""Prediction at a model's target spacing: inputs of known spacing are resampled to it, and the
labels come back on the input's own grid (shape, affine, header); a model whose target equals
the input's spacing changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.infer.predictor import Prediction
from unetkit.infer.spacing import labels_of, predict_at_spacing
from unetkit.train.resample import resample_labels, resample_sample, zoom_to


def _blob(shape: tuple[int, ...]) -> np.ndarray:
    """A ball of 1s in 0s (an object several voxels thick along every axis)."""
    grid = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape), indexing="ij")
    radius = [n / 3 for n in shape]
    return (sum((g / r) ** 2 for g, r in zip(grid, radius, strict=True)) <= 1).astype(np.int64)


class ThresholdNet:
    """A stand-in network: probability of class 1 = the (resampled) image value; records the
    shapes it was given."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, sources, images, probabilities) -> list[Prediction]:
        out = []
        for im in images:
            self.shapes.append(tuple(im.shape[1:]))
            p = np.clip(im[0], 0.0, 1.0).astype(np.float32)
            probs = np.stack([1.0 - p, p])
            out.append(Prediction((p > 0.5).astype(np.uint8), probs if probabilities else None))
        return out


def test_a_volume_at_4_1_1_predicted_at_1_1_1_comes_back_on_its_own_grid() -> None:
    mask = _blob((6, 20, 18))  # spacing (4, 1, 1): the first axis is the coarse one
    image = mask[None].astype(np.float32)
    net = ThresholdNet()
    (pred,) = predict_at_spacing(
        net, [Path("a")], [image], [(4.0, 1.0, 1.0)], (1.0, 1.0, 1.0), probabilities=True
    )
    assert net.shapes == [(24, 20, 18)]  # the network saw it at the target spacing
    assert pred.labels.shape == mask.shape and pred.labels.dtype == np.uint8
    assert pred.probabilities is not None and pred.probabilities.shape == (2, *mask.shape)
    # linear up, threshold, probabilities linear down, argmax: the object comes back exactly
    np.testing.assert_array_equal(pred.labels, mask)


def test_inputs_at_the_target_or_of_unknown_spacing_are_predicted_as_they_are() -> None:
    image = _blob((5, 12, 12))[None].astype(np.float32)
    net = ThresholdNet()
    preds = predict_at_spacing(
        net,
        [Path("a"), Path("b"), Path("c")],
        [image, image, image],
        [(2.0, 1.0, 1.0), None, (2.04, 1.0, 1.0)],  # the last: no axis gains or loses a voxel
        (2.0, 1.0, 1.0),
        probabilities=False,
    )
    assert net.shapes == [(5, 12, 12)] * 3
    direct = net([Path("a")], [image], False)[0]
    for p in preds:
        np.testing.assert_array_equal(p.labels, direct.labels)
        assert p.probabilities is None and p.labels.dtype == direct.labels.dtype


def test_labels_of_probabilities_map_channels_to_classes() -> None:
    probs = np.array([[[0.2, 0.1, 0.6]], [[0.5, 0.2, 0.3]], [[0.3, 0.7, 0.1]]], np.float32)
    np.testing.assert_array_equal(labels_of(probs, None, np.uint8), [[1, 2, 0]])
    np.testing.assert_array_equal(labels_of(probs, (0, 1, 1), np.uint8), [[1, 1, 0]])


def test_masks_are_resampled_per_class_and_samples_keep_their_grid_at_the_target() -> None:
    from unetkit.data.sample import Sample

    mask = np.zeros((4, 8, 8), np.int64)
    mask[1:3, 2:6, 2:6] = 2
    mask[0, 0, :] = 1
    up = resample_labels(mask, (16, 8, 8))
    assert set(np.unique(up)) == {0, 1, 2}
    np.testing.assert_array_equal(resample_labels(up, (4, 8, 8)), mask)
    # a nearest-neighbour reference agrees away from label borders
    near = zoom_to(mask[None], (16, 8, 8), order=0)[0]
    assert (up == near).mean() > 0.9
    sample = Sample(mask[None].astype(np.float32), mask, None, "s")
    assert resample_sample(sample, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0)) is sample
    assert resample_sample(sample, None, (1.0, 1.0, 1.0)) is sample
    moved = resample_sample(sample, (2.0, 1.0, 1.0), (0.5, 1.0, 1.0))
    assert moved.image.shape == (1, 16, 8, 8) and moved.mask.shape == (16, 8, 8)


# ------------------------------------------------------------------ NIfTI end to end (predict)


def _tiny_3d_model():
    import torch

    from unetkit.model import UNet, UNetConfig

    torch.manual_seed(0)
    return UNet(UNetConfig(spatial_dims=3, widths=(4, 8), norm="none")).eval()


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    nib = pytest.importorskip("nibabel")
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    img.header["descrip"] = b"spacing 1x1x4"
    nib.save(img, str(path))


@pytest.fixture
def volume_1_1_4(tmp_path: Path) -> Path:
    """A NIfTI of stored shape (16, 14, 6) with voxels 1 x 1 x 4 mm, flipped and oblique."""
    a = np.radians(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-1.0, 1.0, 4.0])
    affine[:3, 3] = (12.0, -7.5, 30.0)
    src = tmp_path / "in" / "case.nii.gz"
    src.parent.mkdir()
    data = np.random.default_rng(2).normal(size=(16, 14, 6)).astype(np.float32)
    _save_nifti(src, data, affine)
    return src


def test_predict_resamples_a_1_1_4_volume_and_writes_labels_on_its_grid(
    tmp_path: Path, volume_1_1_4: Path
) -> None:
    nib = pytest.importorskip("nibabel")
    from unetkit.infer.files import predict_files

    model = _tiny_3d_model()
    meta = {"target_spacing": [2.0, 1.0, 1.0]}  # network order (S, A, R): z refined 2x
    predict_files(model, meta, [volume_1_1_4], tmp_path / "out", save_probabilities=True)
    ref = nib.load(str(volume_1_1_4))
    labels = nib.load(str(tmp_path / "out" / "case.nii.gz"))
    probs = nib.load(str(tmp_path / "out" / "probabilities" / "case.nii.gz"))
    assert labels.shape == ref.shape and probs.shape == (*ref.shape, 2)
    for out in (labels, probs):
        np.testing.assert_array_equal(out.affine, ref.affine)
        np.testing.assert_array_equal(out.header.get_sform(), ref.header.get_sform())
        np.testing.assert_array_equal(out.header.get_qform(), ref.header.get_qform())
        assert out.header["descrip"] == ref.header["descrip"]
    np.testing.assert_array_equal(
        np.asarray(labels.dataobj), np.argmax(np.asarray(probs.dataobj), axis=-1)
    )
    # the same model without a target spacing predicts another thing here (it saw 6 slices)
    predict_files(model, {}, [volume_1_1_4], tmp_path / "plain", save_probabilities=True)
    plain = nib.load(str(tmp_path / "plain" / "probabilities" / "case.nii.gz"))
    assert not np.array_equal(np.asarray(plain.dataobj), np.asarray(probs.dataobj))


def test_a_target_spacing_equal_to_the_inputs_changes_nothing(
    tmp_path: Path, volume_1_1_4: Path
) -> None:
    from unetkit.infer.files import predict_files

    model = _tiny_3d_model()
    predict_files(model, {}, [volume_1_1_4], tmp_path / "a", save_probabilities=True)
    same = {"target_spacing": [4.0, 1.0, 1.0]}
    predict_files(model, same, [volume_1_1_4], tmp_path / "b", save_probabilities=True)
    for rel in ("case.nii.gz", "probabilities/case.nii.gz"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_a_declared_spacing_resamples_a_tiff_volume_and_keeps_its_shape(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    from unetkit.infer.files import predict_files
    from unetkit.io.images import read_mask

    model = _tiny_3d_model()
    src = tmp_path / "in" / "v.tif"
    src.parent.mkdir()
    volume = np.random.default_rng(4).integers(0, 255, (5, 16, 12), dtype=np.uint8)
    tifffile.imwrite(src, volume)
    meta = {"target_spacing": [1.0, 1.0, 1.0]}
    predict_files(model, meta, [src], tmp_path / "a", save_probabilities=True)
    predict_files(model, meta, [src], tmp_path / "b", save_probabilities=True, spacing=(3, 1, 1))
    plain = np.load(tmp_path / "a" / "probabilities" / "v.npy")
    moved = np.load(tmp_path / "b" / "probabilities" / "v.npy")
    assert plain.shape == moved.shape == (2, 5, 16, 12)
    assert not np.array_equal(plain, moved)  # seen at 15 slices, brought back to 5
    assert read_mask(tmp_path / "b" / "v.tif").shape == (5, 16, 12)
