"""NIfTI: volumes come to one canonical orientation; outputs go back to the input's own voxel
order with its exact affine and header; broken geometry is refused with one line."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from unetkit.errors import DataError
from unetkit.io import nifti
from unetkit.io.images import read_image, read_mask, stored_dtype, write_image, write_mask

nib = pytest.importorskip("nibabel")


def _rotation(degrees: float) -> np.ndarray:
    """A rotation about an oblique axis (all three world axes move)."""
    a = math.radians(degrees)
    axis = np.array([1.0, 2.0, 3.0]) / math.sqrt(14.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


def _affine(linear: np.ndarray, origin: tuple[float, float, float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = origin
    return out


SPACING = np.diag([0.8, 0.9, 5.0])  # stored axis k is the coarse one
AFFINES = {
    "ras": _affine(SPACING, (-10.0, 20.0, 5.0)),
    # LPS-like: the first two axes flipped (what DICOM converters often write)
    "flipped": _affine(np.diag([-1.0, -1.0, 1.0]) @ SPACING, (40.0, 30.0, -7.0)),
    # axes permuted (stored i runs along S, k along R) and one flipped
    "permuted": _affine(
        np.array([[0.0, 0.0, -5.0], [0.0, 0.9, 0.0], [0.8, 0.0, 0.0]]), (3.0, -2.0, 1.0)
    ),
    "oblique": _affine(_rotation(25.0) @ np.diag([-1.0, 1.0, 1.0]) @ SPACING, (1.5, -3.25, 8.0)),
    "oblique_flipped": _affine(
        _rotation(-35.0) @ np.diag([1.0, -1.0, -1.0]) @ SPACING, (-12.0, 4.0, 60.0)
    ),
}
SHAPE = (7, 6, 5)


def _save(path, data: np.ndarray, affine: np.ndarray, *, nifti2: bool = False) -> None:
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    img.header["descrip"] = b"unetkit test volume"
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))


def _world(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(3, *shape)`` world coordinates of every voxel centre."""
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:]).reshape(3, *shape)


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_volumes_come_to_the_network_orientation_superior_anterior_right(tmp_path, name) -> None:
    affine = AFFINES[name]
    world = _world(affine, SHAPE)
    for axis, letter in enumerate("RAS"):
        path = tmp_path / f"{letter}.nii.gz"
        _save(path, world[axis].astype(np.float32), affine)
        vol = read_image(path)[0]  # (D, H, W) = (S, A, R)
        network_axis = 2 - axis
        step = np.diff(vol, axis=network_axis)
        assert (step > 0).all(), f"{letter} must increase along network axis {network_axis}"
    # spacing travels with the image, in network order (S, A, R): the coarse 5 mm stored axis
    # runs along S, except in "permuted" where it runs along R
    want = (0.8, 0.9, 5.0) if name == "permuted" else (5.0, 0.9, 0.8)
    assert nifti.spacing(tmp_path / "S.nii.gz") == pytest.approx(want)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("name", sorted(AFFINES))
def test_outputs_go_back_in_the_inputs_own_orientation_affine_and_header(
    tmp_path, name, suffix
) -> None:
    affine = AFFINES[name]
    rng = np.random.default_rng(0)
    stored = rng.normal(100, 20, size=SHAPE).astype(np.int16)
    src = tmp_path / f"case{suffix}"
    _save(src, stored, affine, nifti2=name == "permuted")
    image = read_image(src)  # (1, D, H, W), network order
    labels = (image[0] > 100).astype(np.int64) + (image[0] > 120)  # a per-voxel function
    out = tmp_path / "out" / f"case{suffix}"
    out.parent.mkdir()
    write_mask(out, labels, like=src)
    written, ref = nib.load(str(out)), nib.load(str(src))
    # the mask lies on the input's voxels exactly: same function of the stored values
    want = (stored > 100).astype(np.uint8) + (stored > 120)
    np.testing.assert_array_equal(np.asarray(written.dataobj), want)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, ref.affine)
    for form in ("get_sform", "get_qform"):
        got_m, got_code = getattr(written.header, form)(coded=True)
        ref_m, ref_code = getattr(ref.header, form)(coded=True)
        np.testing.assert_array_equal(got_m, ref_m)
        assert got_code == ref_code
    for key in ("dim", "pixdim", "xyzt_units", "descrip", "qoffset_x", "quatern_b"):
        np.testing.assert_array_equal(written.header[key], ref.header[key], err_msg=key)
    assert type(written) is type(ref)
    # and read back, it is the network array again
    np.testing.assert_array_equal(read_mask(out), labels)


def test_probabilities_are_written_as_a_4d_volume_on_the_same_grid(tmp_path) -> None:
    affine = AFFINES["oblique_flipped"]
    src = tmp_path / "ct.nii.gz"
    _save(src, np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE), affine)
    image = read_image(src)
    probs = np.stack([image[0] / image.max(), 1 - image[0] / image.max()]).astype(np.float32)
    out = tmp_path / "probs.nii.gz"
    write_image(out, probs, like=src)
    written = nib.load(str(out))
    assert written.shape == (*SHAPE, 2)
    np.testing.assert_array_equal(written.affine, nib.load(str(src)).affine)
    stored = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    np.testing.assert_allclose(np.asarray(written.dataobj)[..., 0], stored / stored.max())


def test_scaled_values_are_read_as_scaled_and_masks_are_written_unscaled(tmp_path) -> None:
    affine = AFFINES["ras"]
    img = nib.Nifti1Image(np.full(SHAPE, 10, np.int16), affine)
    img.header.set_slope_inter(2.0, -1024.0)
    src = tmp_path / "ct.nii"
    nib.save(img, str(src))
    assert read_image(src).max() == pytest.approx(2.0 * 10 - 1024.0)
    assert stored_dtype(src).kind == "f"
    out = tmp_path / "mask.nii"
    write_mask(out, np.ones(nifti.geometry(src).network_shape, np.int64), like=src)
    assert np.asarray(nib.load(str(out)).dataobj).max() == 1  # not 2 * 1 - 1024


def test_a_gzip_without_nifti_name_and_a_nifti_written_without_its_input_are_refused(
    tmp_path,
) -> None:
    bogus = tmp_path / "a.tar.gz"
    bogus.write_bytes(gzip.compress(b"x"))
    with pytest.raises(DataError, match=r"unsupported file type '\.gz'"):
        read_image(bogus)
    with pytest.raises(ValueError, match="never without its affine"):
        write_mask(tmp_path / "m.nii.gz", np.zeros((2, 2, 2), np.int64))
    src = tmp_path / "v.nii"
    _save(src, np.zeros(SHAPE, np.float32), AFFINES["ras"])
    with pytest.raises(ValueError, match="does not match"):
        write_mask(tmp_path / "m.nii", np.zeros(SHAPE, np.int64), like=src)  # not network order
    assert not (tmp_path / "m.nii").exists()


def _bad_affine(tmp_path, value: float, name: str):
    path = tmp_path / name
    affine = AFFINES["ras"].copy()
    _save(path, np.zeros(SHAPE, np.float32), affine)
    img = nib.load(str(path))
    header = img.header.copy()
    row = header["srow_x"].copy()
    row[0] = value
    header["srow_x"] = row
    if value == 0.0:  # a singular grid: the first voxel axis has no length
        header["srow_y"] = np.array([0.0, 0.9, 0.0, 0.0])
        header["srow_z"] = np.array([0.0, 0.0, 5.0, 0.0])
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), None, header), str(path))
    return path


@pytest.mark.parametrize(("value", "match"), [(float("nan"), "NaN or infinite"), (0.0, "singular")])
def test_an_unusable_affine_is_refused_with_one_line(tmp_path, value: float, match: str) -> None:
    path = _bad_affine(tmp_path, value, "bad.nii.gz")
    with pytest.raises(DataError, match=match) as info:
        read_image(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_4d_volumes_and_2d_models_are_refused(tmp_path) -> None:
    path = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((*SHAPE, 3), np.float32), AFFINES["ras"]), str(path))
    with pytest.raises(DataError, match=r"a 4D NIfTI .* split the extra axis"):
        read_image(path, spatial_dims=3)
    vol = tmp_path / "v.nii.gz"
    _save(vol, np.zeros(SHAPE, np.float32), AFFINES["ras"])
    with pytest.raises(DataError, match="pass spatial_dims=3"):
        read_image(vol, spatial_dims=2)


def test_an_image_and_mask_on_different_grids_are_refused(tmp_path) -> None:
    image, mask = tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz"
    _save(image, np.zeros(SHAPE, np.float32), AFFINES["ras"])
    _save(mask, np.zeros(SHAPE, np.uint8), AFFINES["flipped"])
    with pytest.raises(DataError, match="affine differs from its image"):
        nifti.check_same_geometry(image, mask)
    _save(mask, np.zeros(SHAPE, np.uint8), AFFINES["ras"])
    nifti.check_same_geometry(image, mask)  # the same grid passes
    _save(mask, np.zeros((7, 6, 4), np.uint8), AFFINES["ras"])
    with pytest.raises(DataError, match="voxel grid"):
        nifti.check_same_geometry(image, mask)


@pytest.mark.parametrize("name", ["flipped", "oblique"])
def test_predict_writes_labels_and_probabilities_on_the_inputs_grid(tmp_path, name) -> None:
    import torch

    from unetkit.infer import PredictOptions, predict_array
    from unetkit.infer.files import predict_files
    from unetkit.model import UNet, UNetConfig

    torch.manual_seed(0)
    model = UNet(
        UNetConfig(
            spatial_dims=3,
            widths=(4, 8),
            strides=((2, 2, 1),),
            kernel_sizes=((3, 3, 1), (3, 3, 3)),
            norm="none",
        )
    ).eval()
    src = tmp_path / "in" / "case.nii.gz"
    src.parent.mkdir()
    stored = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
    _save(src, stored, AFFINES[name])
    predict_files(model, {}, [src], tmp_path / "out", save_probabilities=True)
    labels = nib.load(str(tmp_path / "out" / "case.nii.gz"))
    probs = nib.load(str(tmp_path / "out" / "probabilities" / "case.nii.gz"))
    ref = nib.load(str(src))
    assert labels.shape == SHAPE and probs.shape == (*SHAPE, 2)
    np.testing.assert_array_equal(labels.affine, ref.affine)
    np.testing.assert_array_equal(probs.affine, ref.affine)
    # the labels are the network's answer on the canonical volume, put back voxel by voxel
    want = predict_array(model, read_image(src), options=PredictOptions()).labels
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "case.nii.gz"), want)
    np.testing.assert_array_equal(
        np.asarray(labels.dataobj), np.argmax(np.asarray(probs.dataobj), axis=-1)
    )
