"""Tiled prediction: overlap-tile equals whole-image inference, same-mode blending agrees,
TTA is equivariant, normalisation follows the metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.infer import Normalization, PredictOptions, predict, predict_array, predict_full
from unetkit.infer.engine import run_network
from unetkit.infer.tiling import plan_tiles, valid_margin
from unetkit.model import UNet, UNetConfig
from unetkit.model.sizes import receptive_field


def _model(seed: int = 0, **kw: object) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(**{"widths": (8, 16, 32), **kw})).eval()  # type: ignore[arg-type]


def _zscore(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / x.std()).astype(np.float32)


def _valid_reference(model: UNet, image: np.ndarray) -> np.ndarray:
    """Whole-image valid-mode probabilities, computed independently of the tiler: mirror-pad
    by the margin (and up to the next valid size at the far end), one forward pass, crop."""
    m = valid_margin(model.config)
    pads = [(0, 0)]
    for n in image.shape[1:]:
        size = next(s for s in range(n + 2 * m, n + 2 * m + 64) if _fits(model, s))
        pads.append((m, size - n - m))
    x = np.pad(_zscore(image), pads, mode="reflect")
    with torch.no_grad():
        y = torch.softmax(model(torch.from_numpy(x)[None]), dim=1)[0].numpy()
    return y[(slice(None), *(slice(0, n) for n in image.shape[1:]))]


def _fits(model: UNet, size: int) -> bool:
    try:
        model.output_size((size,) * model.config.spatial_dims)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("tile", [52, 68, 100, (56, 76)])
def test_valid_overlap_tile_equals_whole_image(tile: object) -> None:
    model = _model(padding="valid", norm="none")
    image = np.random.default_rng(1).normal(5, 2, size=(1, 101, 77)).astype(np.float32)
    plan = plan_tiles(model.config, (101, 77), tile)  # type: ignore[arg-type]
    assert plan.num_tiles > 1
    got = predict_full(model, image, tile=tile, batch_size=3)  # type: ignore[arg-type]
    ref = _valid_reference(model, image)
    np.testing.assert_allclose(got.probabilities, ref, atol=2e-5)
    whole = predict_full(model, image, tile="whole")
    np.testing.assert_array_equal(got.labels, whole.labels)


@pytest.mark.parametrize(
    ("spatial_dims", "shape", "tile"), [(1, (1, 203), 48), (3, (1, 23, 30, 17), 28)]
)
def test_valid_overlap_tile_equals_whole_image_1d_3d(
    spatial_dims: int, shape: tuple[int, ...], tile: int
) -> None:
    model = _model(spatial_dims=spatial_dims, widths=(4, 8), padding="valid", norm="none")
    image = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    assert plan_tiles(model.config, shape[1:], tile).num_tiles > 1
    got = predict_full(model, image, tile=tile).probabilities
    np.testing.assert_allclose(got, _valid_reference(model, image), atol=2e-5)


def test_same_mode_tiles_agree_with_whole_image_away_from_border() -> None:
    """Stated tolerance: with tiles >= ~3x the receptive field and overlap 0.5, probabilities
    further than one receptive field from the image border differ by at most 5e-3 (mean 3e-4)
    from whole-image inference (measured: max 1.6e-3, mean 9e-5 over three random models)."""
    model = _model(seed=1)
    rf = receptive_field(model.config)
    image = np.random.default_rng(1).normal(size=(1, 203, 181)).astype(np.float32)
    whole = predict_full(model, image, tile="whole").probabilities
    tiled = predict_full(model, image, tile=128, overlap=0.5).probabilities
    assert tiled is not None and whole is not None
    diff = np.abs(tiled - whole)[:, rf:-rf, rf:-rf]
    assert diff.max() <= 5e-3
    assert diff.mean() <= 3e-4
    # tiling genuinely changes something (zero padding at tile borders): not a no-op test
    assert np.abs(tiled - whole).max() > 1e-6


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("shape", [(1, 5, 7), (1, 1, 1), (1, 600, 3)])
def test_any_size_gives_a_full_label_map(padding: str, shape: tuple[int, ...]) -> None:
    model = _model(widths=(4, 8), padding=padding, norm="none")
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    labels = predict(model, image, tile=64)
    assert labels.shape == shape[1:] and labels.dtype == np.int64
    assert set(np.unique(labels)) <= {0, 1}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_tta_prediction_is_equivariant(spatial_dims: int) -> None:
    """Averaging over a group makes the predictor exactly equivariant, for any network."""
    model = _model(spatial_dims=spatial_dims, widths=(4, 8))
    shape = (1, 16, 24) if spatial_dims == 2 else (1, 8, 12, 10)
    image = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    base = predict_full(model, image, tile="whole", tta=True).probabilities
    plain = predict_full(model, image, tile="whole", tta=False).probabilities
    assert base is not None and plain is not None
    assert np.abs(base - plain).max() > 1e-4  # a random model is not equivariant itself
    cases = [((1,), None), ((spatial_dims,), None)]
    if spatial_dims == 2:
        cases.append(((), 1))
    for flip_axes, turns in cases:
        x = np.flip(image, axis=flip_axes) if flip_axes else image
        x = np.rot90(x, turns, axes=(1, 2)) if turns else x
        got = predict_full(model, np.ascontiguousarray(x), tile="whole", tta=True).probabilities
        expected = np.flip(base, axis=flip_axes) if flip_axes else base
        expected = np.rot90(expected, turns, axes=(1, 2)) if turns else expected
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_tta_of_a_left_right_model_averages_only_its_mirror(spatial_dims: int) -> None:
    """A model trained with left-right flips only (metadata ``flips: last_axis``) is averaged
    over the identity and the mirror of the last axis: exactly the two plain predictions'
    logits averaged, equivariant under that mirror, not under an up-down flip; the model's own
    record decides, and an older model file (no record) keeps the full set."""
    model = _model(spatial_dims=spatial_dims, widths=(4, 8))
    shape = {1: (1, 24), 2: (1, 16, 24), 3: (1, 8, 12, 10)}[spatial_dims]
    image = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    meta = {"flips": "last_axis"}

    def probs(x: np.ndarray, tta: bool, metadata: dict | None = meta) -> np.ndarray:
        x = np.ascontiguousarray(x)
        got = predict_full(model, x, tile="whole", tta=tta, metadata=metadata).probabilities
        assert got is not None
        return got

    last = spatial_dims  # the last axis of (C, *spatial)
    mirrored = np.flip(probs(np.flip(image, axis=last), False), axis=last)
    lr = probs(image, True)
    # logits are averaged: the softmax of the mean log-probabilities (per-pixel shifts cancel)
    mean_log = (np.log(probs(image, False)) + np.log(mirrored)) / 2
    expected = np.exp(mean_log) / np.exp(mean_log).sum(axis=0, keepdims=True)
    np.testing.assert_allclose(lr, expected, atol=1e-5)
    np.testing.assert_allclose(
        probs(np.flip(image, axis=last), True), np.flip(lr, axis=last), atol=1e-5
    )
    if spatial_dims > 1:
        up_down = np.flip(probs(np.flip(image, axis=1), True), axis=1)
        assert np.abs(up_down - lr).max() > 1e-4  # no symmetry of this model's data
        assert np.abs(probs(image, True, None) - lr).max() > 1e-4  # no record: every flip
    with pytest.raises(ValueError, match="tta_flips"):
        PredictOptions(tta=True, tta_flips="up_down")


def test_tta_of_an_equivariant_network_changes_nothing() -> None:
    """A 1x1-kernel network (pointwise, no pooling) is flip/rotation equivariant."""
    model = _model(widths=(6,), kernel_size=1, norm="none")
    image = np.random.default_rng(4).normal(size=(1, 20, 13)).astype(np.float32)
    plain = predict_full(model, image, tile="whole").probabilities
    tta = predict_full(model, image, tile="whole", tta=True).probabilities
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_per_image_normalisation_ignores_affine_intensity_changes() -> None:
    model = _model()
    image = np.random.default_rng(5).normal(size=(1, 40, 40)).astype(np.float32)
    a = predict_full(model, image, tile="whole").probabilities
    b = predict_full(model, 3.0 * image + 100.0, tile="whole").probabilities
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_dataset_normalisation_uses_stored_mean_std_and_clip() -> None:
    model = _model()
    image = np.random.default_rng(6).normal(50, 10, size=(1, 32, 32)).astype(np.float32)
    meta = {"normalization": {"mode": "dataset", "mean": [40.0], "std": [5.0], "clip": [30, 60]}}
    got = predict_full(model, image, tile="whole", metadata=meta).probabilities
    manual = ((np.clip(image, 30, 60) - 40.0) / 5.0).astype(np.float32)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(manual)[None]), 1)[0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_model_path_uses_its_metadata(tmp_path) -> None:
    from unetkit.modelfile import save

    model = _model()
    meta = {"num_classes": 2, "normalization": {"mode": "dataset", "mean": [1.0], "std": [2.0]}}
    path = save(model, tmp_path / "m.safetensors", metadata=meta)
    image = np.random.default_rng(7).normal(size=(32, 32)).astype(np.float32)
    from_path = predict(path, image, tile="whole")
    from_model = predict(model, image, tile="whole", metadata=meta)
    np.testing.assert_array_equal(from_path, from_model)


def test_single_channel_model_gives_two_class_probabilities() -> None:
    model = _model(out_channels=1)
    image = np.random.default_rng(8).normal(size=(1, 24, 24)).astype(np.float32)
    result = predict_full(model, image, tile="whole")
    assert result.probabilities is not None
    assert result.probabilities.shape == (2, 24, 24)
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(result.labels, result.probabilities[1] > 0.5)


def test_compact_label_dtype_and_bands() -> None:
    model = _model()
    image = np.random.default_rng(9).normal(size=(1, 90, 40)).astype(np.float32)
    opts = PredictOptions(tile=32, overlap=0.25, batch_size=2)
    small = predict_array(model, image, options=opts, label_dtype=np.uint8)
    big = predict_array(model, image, options=opts)
    assert small.labels.dtype == np.uint8
    np.testing.assert_array_equal(small.labels, big.labels)


def test_run_network_restores_training_mode_and_returns_float32() -> None:
    model = _model().train()
    x = torch.randn(2, 1, 16, 16)
    y = run_network(model, x)
    assert model.training and y.dtype == torch.float32 and not y.requires_grad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(y, model(x))


@pytest.mark.parametrize(
    ("shape", "match"), [((3, 20, 20), "3 channel"), ((1, 2, 20, 20), "spatial axes")]
)
def test_wrong_images_are_refused_with_the_reason(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        predict(_model(), np.zeros(shape, np.float32))


def test_normalization_from_metadata_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="mode"):
        Normalization.from_metadata({"mode": "minmax"})
    with pytest.raises(ValueError, match="mean"):
        Normalization.from_metadata({"mode": "dataset", "mean": [1, 2], "std": [1, 1]}).resolve(
            np.zeros((1, 4, 4), np.float32)
        )


@pytest.mark.parametrize(
    ("kw", "shape", "tile"),
    [
        ({}, (1, 203, 181), 100),
        ({"widths": (4, 8, 16, 32)}, (1, 333, 301), 200),
        ({"up": "interp"}, (1, 250, 197), 112),
        ({"down": "strided", "widths": (4, 8, 16)}, (1, 230, 210), 100),
        ({"spatial_dims": 3, "widths": (4, 8)}, (1, 85, 61, 37), 40),
    ],
)
def test_same_mode_auto_overlap_equals_whole_image(
    kw: dict[str, object], shape: tuple[int, ...], tile: int
) -> None:
    """``overlap="auto"`` (the default) takes each pixel from a tile where it has its whole
    receptive field, or where the tile's zero padding is the image border's: whole-image
    probabilities up to float rounding, everywhere (borders included), not only close."""
    model = _model(seed=1, **kw)
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    plan = plan_tiles(model.config, shape[1:], tile)
    assert plan.num_tiles > 2 and plan.axes[0].context > 0  # the context overlap, not Gaussian
    whole = predict_full(model, image, tile="whole")
    tiled = predict_full(model, image, tile=tile)
    np.testing.assert_allclose(tiled.probabilities, whole.probabilities, atol=1e-5)
    decided = np.abs(np.diff(whole.probabilities, axis=0)[0]) > 1e-4  # not a float tie
    np.testing.assert_array_equal(tiled.labels[decided], whole.labels[decided])
    blended = predict_full(model, image, tile=tile, overlap=0.5).probabilities
    assert np.abs(blended - whole.probabilities).max() > 1e-3  # the test can tell them apart
