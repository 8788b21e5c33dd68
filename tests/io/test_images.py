"""Reading and writing images and masks: layouts, formats and every refusal."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from unetkit.errors import DataError
from unetkit.io import npy, png
from unetkit.io.images import read_image, read_mask, write_image, write_mask

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


# ----------------------------------------------------------------------------- layouts


def test_grey_png_8_and_16_bit_preserved(tmp_path: Path) -> None:
    a8 = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    a16 = np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000 + 7
    img8 = read_image(_png(tmp_path / "a.png", a8))
    img16 = read_image(_png(tmp_path / "b.png", a16))
    assert img8.dtype == np.float32 and img8.shape == (1, 4, 5)
    assert np.array_equal(img8[0], a8)
    assert img16.max() > 255 and np.array_equal(img16[0], a16)


def test_rgb_png_is_channel_first(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    img = read_image(_png(tmp_path / "a.png", rgb))
    assert img.shape == (3, 4, 5)
    assert np.array_equal(img, np.moveaxis(rgb, -1, 0))


def test_constant_alpha_dropped_varying_alpha_kept(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    assert read_image(_png(tmp_path / "opaque.png", rgba)).shape == (3, 4, 5)
    rgba[0, 0, 3] = 10
    img = read_image(_png(tmp_path / "alpha.png", rgba))
    assert img.shape == (4, 4, 5) and img[3, 0, 0] == 10


def test_tiff_16_bit_and_float_preserved(tmp_path: Path) -> None:
    a16 = np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000
    af = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tif", a16)
    tifffile.imwrite(tmp_path / "b.tiff", af)
    assert np.array_equal(read_image(tmp_path / "a.tif")[0], a16)
    assert np.array_equal(read_image(tmp_path / "b.tiff")[0], af)


def test_multipage_tiff_is_a_volume(tmp_path: Path) -> None:
    stack = np.random.default_rng(2).integers(0, 4, (7, 5, 6), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    vol = read_image(tmp_path / "s.tif")
    assert vol.shape == (1, 7, 5, 6) and np.array_equal(vol[0], stack)
    mask = read_mask(tmp_path / "s.tif")
    assert mask.shape == (7, 5, 6) and mask.dtype == np.int64
    assert np.array_equal(mask, stack)
    # asked for 2D, the pages are channels
    assert read_image(tmp_path / "s.tif", spatial_dims=2).shape == (7, 5, 6)


@pytest.mark.parametrize(
    ("shape", "spatial_dims", "expected"),
    [
        ((9,), None, (1, 9)),
        ((4, 9), None, (1, 4, 9)),
        ((4, 9), 1, (4, 9)),
        ((3, 4, 9), None, (1, 3, 4, 9)),
        ((3, 4, 9), 2, (3, 4, 9)),
        ((2, 3, 4, 9), None, (2, 3, 4, 9)),
    ],
)
def test_npy_layout_rule(tmp_path: Path, shape, spatial_dims, expected) -> None:
    arr = np.random.default_rng(0).random(shape)
    np.save(tmp_path / "a.npy", arr)
    img = read_image(tmp_path / "a.npy", spatial_dims=spatial_dims)
    assert img.shape == expected
    assert np.allclose(img.reshape(-1), arr.reshape(-1))


def test_npy_wrong_ndim_for_spatial_dims(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(DataError, match=r"a\.npy.*spatial_dims"):
        read_image(tmp_path / "a.npy", spatial_dims=1)


@pytest.mark.parametrize(
    ("name", "array"),
    [
        ("a.png", np.arange(12, dtype=np.float32).reshape(1, 3, 4) * 5000),
        ("b.png", np.arange(60, dtype=np.float32).reshape(3, 4, 5)),
        ("c.tif", np.random.default_rng(0).random((1, 4, 5, 6), dtype=np.float32)),
        ("d.tif", np.random.default_rng(1).random((2, 5, 6), dtype=np.float32)),
        ("e.tiff", np.arange(90, dtype=np.float32).reshape(3, 5, 6)),
        ("f.npy", np.random.default_rng(2).random((1, 7), dtype=np.float32)),
        ("g.tif", np.random.default_rng(3).random((2, 3, 5, 6), dtype=np.float32)),
        ("h.npy", np.random.default_rng(4).random((2, 3, 5, 6), dtype=np.float32)),
    ],
)
def test_write_read_image_roundtrip(tmp_path: Path, name: str, array: np.ndarray) -> None:
    write_image(tmp_path / name, array)
    assert np.array_equal(read_image(tmp_path / name), array)
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize(
    ("name", "shape"), [("m.png", (5, 6)), ("m.tif", (3, 5, 6)), ("m.npy", (8,))]
)
def test_write_read_mask_roundtrip(tmp_path: Path, name: str, shape) -> None:
    mask = np.random.default_rng(0).integers(0, 300, shape)
    write_mask(tmp_path / name, mask)
    out = read_mask(tmp_path / name)
    assert out.dtype == np.int64 and np.array_equal(out, mask)


def test_write_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="array"):
        write_image(tmp_path / "a.png", np.full((1, 3, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="array"):
        write_mask(tmp_path / "a.png", np.zeros((2, 3, 3), np.int64))
    with pytest.raises(ValueError, match="path"):
        write_image(tmp_path / "a.jpg", np.zeros((1, 3, 3), np.float32))


# ----------------------------------------------------------------------------- masks


def test_mask_rgb_with_equal_channels_is_accepted(tmp_path: Path) -> None:
    lab = np.random.default_rng(0).integers(0, 3, (4, 5), dtype=np.uint8)
    mask = read_mask(_png(tmp_path / "m.png", np.stack([lab] * 3, -1)))
    assert mask.shape == (4, 5) and np.array_equal(mask, lab)


def test_mask_colour_is_refused(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    with pytest.raises(DataError, match=r"m\.png.*single-channel label images"):
        read_mask(_png(tmp_path / "m.png", rgb))


def test_mask_float_non_integer_refused_integer_valued_accepted(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "ok.tif", np.array([[0.0, 1.0], [2.0, 0.0]], np.float32))
    assert read_mask(tmp_path / "ok.tif").tolist() == [[0, 1], [2, 0]]
    tifffile.imwrite(tmp_path / "bad.tif", np.array([[0.0, 0.5], [1.0, 0.0]], np.float32))
    with pytest.raises(DataError, match=r"bad\.tif.*non-integer"):
        read_mask(tmp_path / "bad.tif")


def test_palette_mask_gives_indices(tmp_path: Path) -> None:
    lab = np.array([[0, 1], [2, 1]], np.uint8)
    im = Image.fromarray(lab, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    im.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").tolist() == lab.tolist()
    assert read_image(tmp_path / "p.png").shape == (3, 2, 2)


# ----------------------------------------------------------------------------- refusals


def test_unsupported_extension_lists_allowed(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0junk")
    with pytest.raises(DataError, match=r"a\.jpg.*\.png \.tif \.tiff \.npy"):
        read_image(tmp_path / "a.jpg")


def test_png_that_is_really_npy(tmp_path: Path) -> None:
    with open(tmp_path / "a.png", "wb") as fh:
        np.save(fh, np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"a\.png.*content is NumPy \.npy"):
        read_image(tmp_path / "a.png")


def test_jpeg_named_png_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="JPEG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"a\.png.*JPEG"):
        read_image(tmp_path / "a.png")


def test_truncated_png(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    data = (_png(tmp_path / "full.png", arr)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png.*corrupt or truncated"):
        read_image(tmp_path / "cut.png")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "e.tif").write_bytes(b"")
    with pytest.raises(DataError, match=r"e\.tif.*empty"):
        read_image(tmp_path / "e.tif")
    with pytest.raises(DataError, match=r"nope\.png.*not found"):
        read_image(tmp_path / "nope.png")


def test_pickled_npy_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"o\.npy.*Python objects"):
        read_image(tmp_path / "o.npy")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_image(tmp_path: Path, value: float) -> None:
    arr = np.ones((4, 4), np.float32)
    arr[1, 2] = value
    tifffile.imwrite(tmp_path / "n.tif", arr)
    with pytest.raises(DataError, match=r"n\.tif.*NaN or infinite"):
        read_image(tmp_path / "n.tif")


def _bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height grey pixels, with almost no data."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4)
    path.write_bytes(
        png.PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    bomb = _bomb_png(tmp_path / "bomb.png", 60000, 60000)
    with pytest.raises(DataError, match=r"bomb\.png.*exceeds the limit.*max_pixels="):
        read_image(bomb)


def test_pixel_limit_argument_and_env(tmp_path: Path, monkeypatch) -> None:
    path = _png(tmp_path / "a.png", np.zeros((100, 100), np.uint8))
    with pytest.raises(DataError, match="UNETKIT_MAX_PIXELS=10000"):
        read_image(path, max_pixels=5000)
    assert read_image(path, max_pixels=10000).shape == (1, 100, 100)
    monkeypatch.setenv("UNETKIT_MAX_PIXELS", "5000")
    with pytest.raises(DataError, match="exceeds the limit of 5000"):
        read_mask(path)
    assert read_mask(path, max_pixels=20000).shape == (100, 100)
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(path, max_pixels=0)


def test_pixel_limit_applies_to_tiff_and_npy(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((3, 10, 10), np.uint8), photometric="minisblack")
    np.save(tmp_path / "a.npy", np.zeros((10, 30)))
    for name in ("a.tif", "a.npy"):
        with pytest.raises(DataError, match="exceeds the limit"):
            read_image(tmp_path / name, max_pixels=299)
        assert read_image(tmp_path / name, max_pixels=300).size == 300


def test_pillow_bomb_error_becomes_data_error(tmp_path: Path, monkeypatch) -> None:
    path = _png(tmp_path / "a.png", np.zeros((10, 10), np.uint8))

    def refuse(*args, **kwargs):
        raise Image.DecompressionBombError("too big")

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(DataError, match=r"a\.png.*decompression bomb.*UNETKIT_MAX_PIXELS"):
        read_image(path)


def test_bad_spatial_dims_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        read_image(tmp_path / "a.png", spatial_dims=4)


# ----------------------------------------------------------------------------- fuzz

_PREFIXES = [b"", png.PNG_MAGIC, b"II*\x00", b"MM\x00*", npy.NPY_MAGIC + b"\x01\x00"]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    suffix=st.sampled_from([".png", ".tif", ".npy"]),
    prefix=st.sampled_from(_PREFIXES),
    body=st.binary(max_size=300),
)
def test_fuzz_random_bytes_give_array_or_data_error(
    tmp_path: Path, suffix: str, prefix: bytes, body: bytes
) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(prefix + body)
    for reader in (read_image, read_mask):
        try:
            out = reader(path, max_pixels=10**6)
        except DataError as exc:
            assert "fuzz" in str(exc) and "\n" not in str(exc)
        else:
            assert isinstance(out, np.ndarray)


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (DATA / "dsb2018-nuclei").is_dir(), reason="shared data absent")
def test_real_rgb_image_and_16_bit_instances() -> None:
    root = DATA / "dsb2018-nuclei"
    stem = sorted(p.stem for p in (root / "instances").iterdir())[0]
    img = read_image(root / "images" / f"{stem}.png")
    inst = read_mask(root / "instances" / f"{stem}.png")
    mask = read_mask(root / "masks" / f"{stem}.png")
    assert img.shape[0] == 3 and img.shape[1:] == mask.shape == inst.shape
    assert set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(inst > 0, mask > 0)


def test_tiff_pages_of_one_size_written_one_by_one_are_a_stack(tmp_path) -> None:
    pages = [np.full((6, 5), i, np.uint8) for i in range(3)]
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for page in pages:
            tif.write(page)
    volume = read_image(tmp_path / "pages.tif")
    assert volume.shape == (1, 3, 6, 5)
    assert [int(volume[0, i, 0, 0]) for i in range(3)] == [0, 1, 2]  # every page, in order


def test_tiff_pages_of_different_sizes_are_refused_naming_them(tmp_path) -> None:
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(np.zeros((32, 32), np.uint8))
        tif.write(np.zeros((16, 16), np.uint8))
    with pytest.raises(
        DataError,
        match=r"pyramid.tif: multi-page TIFF whose pages differ: "
        r"sizes 32x32, 16x16",
    ):
        read_image(tmp_path / "pyramid.tif")
