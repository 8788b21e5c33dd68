"""Bounded fuzzing with hypothesis: every input gives a result or a clear error, never a crash.

Targets: the image readers (mutated real files and forged ``.npy`` headers), the dataset
validator (random folders of good and bad files) and the config parser (``from_dict`` on
``UNetConfig`` and a nested config, YAML text, ``key=value`` overrides). Each test is kept to a
few seconds with ``max_examples``; ``deadline=None`` because the machine is shared.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import torch
from catalogue import jpeg_bytes, jpeg_like_mask, png_bytes
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from unetkit.configtools import ConfigValueError, apply_overrides, from_dict, load_yaml
from unetkit.data.dataset import check_dataset, load_dataset
from unetkit.errors import DataError
from unetkit.io.images import read_image, read_mask
from unetkit.model import UNet, UNetConfig
from unetkit.model.config import ACTS, NORMS


def fuzz(max_examples: int) -> settings:
    """Bounded: ``max_examples`` inputs, no per-example deadline (the machine is shared)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def _tiff(arr: np.ndarray, **kw: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


_rng = np.random.default_rng(0)
_GREY = _rng.integers(0, 256, (12, 10), dtype=np.uint8)
SEEDS: dict[str, tuple[str, bytes]] = {
    "png grey": (".png", png_bytes(_GREY)),
    "png rgb": (".png", png_bytes(np.stack([_GREY, 255 - _GREY, _GREY // 2], -1))),
    "png 16-bit": (".png", png_bytes(_GREY.astype(np.uint16) * 200)),
    "png mask": (".png", png_bytes((_GREY > 128).astype(np.uint8))),
    "tiff 2D": (".tif", _tiff(_GREY.astype(np.uint16))),
    "tiff stack": (".tif", _tiff(np.stack([_GREY] * 3), photometric="minisblack")),
    "tiff rgb": (".tif", _tiff(np.stack([_GREY] * 3, -1), photometric="rgb")),
    "tiff float": (".tif", _tiff(_GREY.astype(np.float32) / 7)),
    "npy 2D": (".npy", _npy(_GREY.astype(np.float32))),
    "npy 3D": (".npy", _npy(np.stack([_GREY] * 2).astype(np.int64))),
    "npy 4D": (".npy", _npy(np.ones((2, 2, 3, 4), np.float64))),
}


def _check_reader_result(path: Path, reader: Any, spatial_dims: int | None) -> None:
    try:
        out = reader(path, spatial_dims=spatial_dims, max_pixels=10**6)
    except DataError as exc:
        event(f"{reader.__name__} refused")
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message, message
        return
    event(f"{reader.__name__} read")
    if reader is read_image:
        assert out.dtype == np.float32 and 2 <= out.ndim <= 4 and out.size > 0
        assert np.isfinite(out).all()
        if spatial_dims is not None:
            assert out.ndim == spatial_dims + 1
    else:
        assert out.dtype == np.int64 and 1 <= out.ndim <= 3 and out.size > 0
        if spatial_dims is not None:
            assert out.ndim == spatial_dims


@fuzz(150)
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    suffix=st.one_of(st.none(), st.sampled_from([".png", ".tif", ".npy"])),
    spatial_dims=st.sampled_from([None, 1, 2, 3]),
)
def test_fuzz_mutated_image_files(
    tmp_path: Path,
    seed: str,
    edits: list[tuple[float, int]],
    cut: float | None,
    suffix: str | None,
    spatial_dims: int | None,
) -> None:
    own_suffix, data = SEEDS[seed]
    buf = bytearray(data)
    for where, value in edits:
        buf[int(where * (len(buf) - 1))] = value
    if cut is not None:
        buf = buf[: int(cut * len(buf))]
    path = tmp_path / f"fuzz{suffix or own_suffix}"
    path.write_bytes(bytes(buf))
    for reader in (read_image, read_mask):
        _check_reader_result(path, reader, spatial_dims)


_DESCRS = [
    "<f4",
    ">f8",
    "<i8",
    "|u1",
    "<u2",
    "|b1",
    "<c8",
    "|O",
    "|V8",
    "<M8[s]",
    "|S3",
    "<U2",
    "<f2",
    [("a", "<f4")],
]


@fuzz(120)
@given(
    descr=st.sampled_from(_DESCRS),
    fortran=st.booleans(),
    shape=st.lists(st.integers(-1, 5), max_size=6).map(tuple),
    body=st.binary(max_size=400),
)
def test_fuzz_forged_npy_headers(
    tmp_path: Path, descr: Any, fortran: bool, shape: tuple[int, ...], body: bytes
) -> None:
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    path = tmp_path / "forged.npy"
    path.write_bytes(buf.getvalue() + body)
    for reader in (read_image, read_mask):
        _check_reader_result(path, reader, None)


# ----------------------------------------------------------------------------- datasets

_S = (8, 8)
IMAGE_KINDS = {
    "png": lambda p, s: p.with_suffix(".png").write_bytes(png_bytes(np.full(s, 9, np.uint8))),
    "png rgb": lambda p, s: p.with_suffix(".png").write_bytes(
        png_bytes(np.full((*s, 3), 9, np.uint8))
    ),
    "npy float": lambda p, s: p.with_suffix(".npy").write_bytes(_npy(np.ones(s, np.float32))),
    "npy nan": lambda p, s: p.with_suffix(".npy").write_bytes(_npy(np.full(s, np.nan, np.float32))),
    "npy 3D": lambda p, s: p.with_suffix(".npy").write_bytes(_npy(np.ones((3, *s), np.float32))),
    "truncated": lambda p, s: p.with_suffix(".png").write_bytes(
        png_bytes(np.full(s, 9, np.uint8))[:30]
    ),
    "jpeg as png": lambda p, s: p.with_suffix(".png").write_bytes(
        jpeg_bytes(np.full(s, 9, np.uint8))
    ),
    "noise": lambda p, s: p.with_suffix(".tif").write_bytes(b"II*\x00" + bytes(range(40))),
}


def _mask_png(arr: np.ndarray) -> Any:
    return lambda p, s: p.with_suffix(".png").write_bytes(png_bytes(arr))


MASK_KINDS = {
    "binary": lambda p, s: p.with_suffix(".png").write_bytes(png_bytes(np.eye(*s, dtype=np.uint8))),
    "0/255": lambda p, s: p.with_suffix(".png").write_bytes(
        png_bytes(np.eye(*s, dtype=np.uint8) * 255)
    ),
    "classes 0..3": lambda p, s: p.with_suffix(".png").write_bytes(
        png_bytes((np.arange(np.prod(s)).reshape(s) % 4).astype(np.uint8))
    ),
    "background": lambda p, s: p.with_suffix(".png").write_bytes(png_bytes(np.zeros(s, np.uint8))),
    "jpeg-like": lambda p, s: p.with_suffix(".png").write_bytes(png_bytes(jpeg_like_mask(s))),
    "colour": lambda p, s: p.with_suffix(".png").write_bytes(
        png_bytes(
            np.stack(
                [np.eye(*s, dtype=np.uint8) * 255, np.zeros(s, np.uint8), np.ones(s, np.uint8)], -1
            )
        )
    ),
    "negative": lambda p, s: p.with_suffix(".npy").write_bytes(_npy(-np.ones(s, np.int64))),
    "fractional": lambda p, s: p.with_suffix(".npy").write_bytes(_npy(np.full(s, 0.5, np.float32))),
    "wrong size": lambda p, s: p.with_suffix(".png").write_bytes(
        png_bytes(np.zeros((s[0] + 1, s[1]), np.uint8))
    ),
    "volume": lambda p, s: p.with_suffix(".npy").write_bytes(_npy(np.zeros((3, *s), np.int64))),
}


_GOOD_IMAGE = st.sampled_from(["png", "png", "npy float"])
_GOOD_MASK = st.sampled_from(["binary", "0/255", "classes 0..3"])


@fuzz(40)
@given(
    files=st.dictionaries(
        st.sampled_from("abcd"),
        st.tuples(
            st.one_of(_GOOD_IMAGE, _GOOD_IMAGE, st.sampled_from(sorted(IMAGE_KINDS)), st.none()),
            st.one_of(_GOOD_MASK, _GOOD_MASK, st.sampled_from(sorted(MASK_KINDS)), st.none()),
        ),
        min_size=1,
        max_size=4,
    ),
    size=st.sampled_from([(8, 8), (6, 10)]),
    num_classes=st.sampled_from([None, None, 2, 4]),
    spatial_dims=st.sampled_from([None, None, 2, 3]),
)
def test_fuzz_dataset_validator(
    files: dict[str, tuple[str | None, str | None]],
    size: tuple[int, int],
    num_classes: int | None,
    spatial_dims: int | None,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="unetkit-fuzz-"))
    try:
        (root / "images").mkdir()
        (root / "masks").mkdir()
        for stem, (image_kind, mask_kind) in files.items():
            if image_kind is not None:
                IMAGE_KINDS[image_kind](root / "images" / stem, size)
            if mask_kind is not None:
                MASK_KINDS[mask_kind](root / "masks" / stem, size)
        report = check_dataset(root, num_classes=num_classes, spatial_dims=spatial_dims)
        for line in report.problems + report.warnings + report.notes:
            assert "\n" not in line and "Traceback" not in line, line
        event("dataset ok" if report.ok else "dataset refused")
        try:
            samples = load_dataset(root, num_classes=num_classes, spatial_dims=spatial_dims)
        except DataError as exc:
            assert not report.ok
            assert "\n" not in str(exc) and str(len(report.problems)) in str(exc)
            return
        assert report.ok and len(samples) == len(report.pairs) > 0
        for sample in samples:
            assert sample.mask.min() >= 0
            assert np.isfinite(sample.image).all()
            if num_classes is not None:
                assert sample.mask.max() < num_classes
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- configs

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(
        [
            "same",
            "valid",
            "maxpool",
            "strided",
            "interp",
            "concat_1x1",
            "add",
            "none",
            "group",
            "instance",
            "gelu",
            "leaky_relu",
            "residual",
            "encoder",
            "before_concat",
            "default",
            "1e-3",
        ]
    ),
)
_LAYER_SPECS = st.dictionaries(
    st.sampled_from(
        [
            "type",
            "groups",
            "eps",
            "momentum",
            "affine",
            "negative_slope",
            "approximate",
            "inplace",
            "foo",
        ]
    ),
    _SCALARS,
    max_size=3,
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(st.one_of(st.integers(-2, 16), _SCALARS), max_size=5),
    _LAYER_SPECS,
)
_FIELDS = [f.name for f in dataclasses.fields(UNetConfig)]


def _choices(name: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(typing.get_args(typing.get_type_hints(UNetConfig)[name]) or [None])


def _spec(names: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(names),
        st.builds(lambda t, kw: {"type": t, **kw}, st.sampled_from(names), _LAYER_SPECS),
    )


_VALID: dict[str, st.SearchStrategy[Any]] = {
    "spatial_dims": st.sampled_from([1, 2, 3]),
    "in_channels": st.integers(1, 4),
    "out_channels": st.integers(1, 4),
    "widths": st.lists(st.integers(1, 16), min_size=1, max_size=4),
    "kernel_size": st.sampled_from([1, 3, 5]),
    "convs_per_block": st.integers(1, 3),
    "norm": _spec(NORMS),
    "act": _spec(ACTS),
    "dropout": st.floats(0, 0.99),
    "deep_supervision": st.booleans(),
    "encoder_blocks": st.none() | st.lists(st.integers(1, 3), min_size=1, max_size=4),
    "checkpointing": st.sampled_from(["off", "encoder", "all", True, False]),
    "strides": st.none()
    | st.lists(
        st.one_of(st.integers(1, 3), st.lists(st.integers(1, 3), min_size=1, max_size=3)),
        max_size=4,
    ),
    "kernel_sizes": st.none()
    | st.lists(
        st.one_of(st.sampled_from([1, 3]), st.lists(st.sampled_from([1, 3]), max_size=3)),
        max_size=4,
    ),
    "time_conditioning": st.booleans(),
    "num_class_labels": st.integers(0, 4),
    "attention_levels": st.lists(st.integers(0, 4), max_size=2),
    "time_embed_dim": st.sampled_from([0, 8, 16]),
    **{
        name: _choices(name)
        for name in ("padding", "down", "up", "fusion", "norm_placement", "block", "init")
    },
}


@st.composite
def _unet_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid settings, a few of them replaced by anything or by unknown keys."""
    names = draw(st.lists(st.sampled_from(_FIELDS), unique=True, max_size=8))
    data = {name: draw(_VALID[name]) for name in names}
    for name in draw(
        st.lists(st.one_of(st.sampled_from(_FIELDS), st.text(max_size=6)), max_size=2)
    ):
        data[name] = draw(_VALUES)
    return data


@fuzz(150)
@given(data=_unet_dicts())
def test_fuzz_unet_config_from_dict(data: dict[str, Any]) -> None:
    try:
        config = from_dict(UNetConfig, data)
    except ValueError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)
        event("config refused")
        return
    event("config accepted")
    assert isinstance(config, UNetConfig)
    small = max(config.widths) <= 16 and config.depth <= 4 and config.kernel_size <= 7
    channels = max(config.in_channels, config.out_channels)
    few = channels <= 64 and max(config.encoder_blocks or (1,)) <= 3
    if small and few:
        try:
            model = UNet(config).eval()
        except ValueError:
            return
        side = config.downsample_factor + 1
        if config.padding == "same" and config.in_channels <= 8 and not config.time_conditioning:
            x = torch.zeros(1, config.in_channels, *[side] * config.spatial_dims)
            with torch.no_grad():
                assert model(x).shape[1] == config.out_channels


@dataclass(frozen=True)
class _Inner:
    rate: float = 0.1
    steps: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class _Outer:
    model: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    name: str = "run"
    mode: Literal["fast", "slow"] = "fast"
    inner: _Inner | None = None
    sizes: tuple[int, int] = (4, 4)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sizes[0] < 1:
            raise ValueError(f"sizes: expected positive sizes, got {self.sizes}")


_NESTED = st.recursive(
    _VALUES,
    lambda children: st.dictionaries(
        st.sampled_from(
            [
                "model",
                "name",
                "mode",
                "inner",
                "sizes",
                "extra",
                "rate",
                "steps",
                "widths",
                "depth",
                "x",
            ]
        ),
        children,
        max_size=4,
    ),
    max_leaves=12,
)


@fuzz(200)
@given(
    data=st.dictionaries(
        st.sampled_from(["model", "name", "mode", "inner", "sizes", "extra", "bogus"]),
        _NESTED,
        max_size=5,
    )
)
def test_fuzz_nested_config_from_dict(data: dict[str, Any]) -> None:
    try:
        out = from_dict(_Outer, data)
    except ValueError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert isinstance(out, _Outer) and isinstance(out.model, UNetConfig)


_YAML_ALPHABET = st.sampled_from(list("abmodelwidths:_-[]{},'\"&*!|>#%@`?\n\t 0123456789.e+~"))


@fuzz(200)
@given(text=st.one_of(st.text(_YAML_ALPHABET, max_size=60), st.text(max_size=40)))
def test_fuzz_yaml_config_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        data = load_yaml(str(path))
    except ConfigValueError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc), str(exc)
        return
    assert isinstance(data, dict)
    try:
        from_dict(_Outer, data)
    except ValueError as exc:
        assert "\n" not in str(exc), str(exc)


@fuzz(200)
@given(
    overrides=st.lists(
        st.text(st.sampled_from(list("model.widths=[]{}:,'\"1-x \n")), max_size=24), max_size=4
    )
)
def test_fuzz_overrides(overrides: list[str]) -> None:
    base = {"model": {"widths": [4, 8]}, "name": "run"}
    try:
        data = apply_overrides(base, overrides)
    except ConfigValueError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert base == {"model": {"widths": [4, 8]}, "name": "run"}  # never mutated
    try:
        from_dict(_Outer, data)
    except ValueError as exc:
        assert "\n" not in str(exc), str(exc)
