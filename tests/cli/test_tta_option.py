"""``--tta``: off by default for class maps, on by default for instances, explicit wins."""

from __future__ import annotations

import pytest

from unetkit.cli import build_parser
from unetkit.cli.predict import options_from_args, with_tta_default

BASE = ["predict", "--model", "m", "--input", "i", "--out", "o"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], False),
        (["--tta"], True),
        (["--tta", "on"], True),
        (["--tta", "off"], False),
        (["--instances"], True),
        (["--instances", "--tta", "off"], False),
        (["--instances", "--tta"], True),
        (["--tta", "auto"], False),
    ],
)
def test_tta_choice(extra: list[str], expected: bool) -> None:
    args = build_parser().parse_args(BASE + extra)
    assert with_tta_default(options_from_args(args), args, {}).tta is expected


def test_evaluate_instances_uses_tta_by_default() -> None:
    args = build_parser().parse_args(["evaluate", "--model", "m", "--data", "d", "--instances"])
    assert with_tta_default(options_from_args(args), args, {}).tta is True
    plain = build_parser().parse_args(["evaluate", "--model", "m", "--data", "d"])
    assert with_tta_default(options_from_args(plain), plain, {}).tta is False


def test_a_bad_tta_value_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*BASE, "--tta", "sometimes"])


def test_auto_turns_tta_on_for_a_restoration_model() -> None:
    args = build_parser().parse_args(BASE)
    assert with_tta_default(options_from_args(args), args, {"task": "restore"}).tta is True
    off = build_parser().parse_args([*BASE, "--tta", "off"])
    assert with_tta_default(options_from_args(off), off, {"task": "restore"}).tta is False


@pytest.mark.parametrize(
    ("metadata", "flips"), [({"flips": "last_axis"}, "last_axis"), ({}, "all")]
)
def test_tta_averages_over_the_symmetries_the_model_was_trained_with(
    metadata: dict, flips: str
) -> None:
    """A model trained with left-right flips only (street photographs) is averaged over those;
    a model file without the record keeps every flip and rotation."""
    args = build_parser().parse_args([*BASE, "--tta"])
    assert with_tta_default(options_from_args(args), args, metadata).tta_flips == flips
