"""The command line's vocabulary: one spelling per flag, overrides never swallowed."""

from __future__ import annotations

import argparse

import pytest

from unetkit.cli import build_parser
from unetkit.cli.parsing import RENAMED


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def test_no_command_registers_an_old_spelling() -> None:
    for name, sub in _subparsers(build_parser()).items():
        assert not _flags(sub) & set(RENAMED), name


def test_one_spelling_per_meaning() -> None:
    """A flag name with or without a common abbreviation exists in one spelling only."""
    flags = set().union(*(_flags(s) for s in _subparsers(build_parser()).values()))
    assert "--out" in flags and "--output" not in flags
    assert "--batch-size" in flags and "--batch" not in flags


# (command line with the new spelling, the same with the old one)
ALIASES = [
    (
        ["predict", "--model", "m", "--input", "a", "b", "--out", "o"],
        ["predict", "--model", "m", "--input", "a", "b", "--output", "o"],
    ),
    (
        ["predict", "--model", "m", "--input", "a", "--out=o"],
        ["predict", "--model", "m", "--input", "a", "--output=o"],
    ),
    (["info", "--batch-size", "3"], ["info", "--batch", "3"]),
    (["train", "--out", "r"], ["train", "--output", "r"]),
    (["export", "--model", "m", "--format", "onnx", "--out", "f"],
     ["export", "--model", "m", "--format", "onnx", "--output", "f"]),
]


@pytest.mark.parametrize(("new", "old"), ALIASES)
def test_old_spelling_parses_to_the_same(new: list[str], old: list[str]) -> None:
    parser = build_parser()
    assert vars(parser.parse_args(new)) == vars(parser.parse_args(old))


def test_old_spelling_is_hidden_from_help() -> None:
    for sub in _subparsers(build_parser()).values():
        text = sub.format_help()
        for old in RENAMED:
            assert f"{old} " not in text and f"{old}," not in text


@pytest.mark.parametrize(
    ("argv", "option", "values", "overrides"),
    [
        (["train", "--patch-size", "64", "64", "train.lr=0.01"], "patch_size", [64, 64],
         ["train.lr=0.01"]),
        (["train", "--patch-size", "64", "a=1", "--seed", "2", "b=2", "a=3"], "patch_size",
         [64], ["a=1", "b=2", "a=3"]),
        (["info", "--input-size", "64", "48", "padding=valid", "--json"], "input_size",
         [64, 48], ["padding=valid"]),
        (["info", "depth=3", "--input-size", "64", "widths=[4,8,16]"], "input_size", [64],
         ["depth=3", "widths=[4,8,16]"]),
    ],
)
def test_multi_value_options_leave_overrides(
    argv: list[str], option: str, values: list[int], overrides: list[str]
) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, option) == values
    assert args.overrides == overrides


def test_commands_without_overrides_name_the_stray_override(cli, tmp_path) -> None:
    r = cli("predict", "--model", "m", "--input", str(tmp_path), "epochs=3", "--out", "o")
    assert r.returncode == 2
    assert "unrecognized arguments: epochs=3" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_file_named_like_an_override_stays_a_value(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a=1.png").write_bytes(b"")
    argv = ["predict", "--model", "m", "--input", "a=1.png", "--out", "o"]
    args = build_parser().parse_args(argv)
    assert args.input == ["a=1.png"]


def test_negative_numbers_stay_values() -> None:
    args = build_parser().parse_args(["info", "--input-size", "-4"])
    assert args.input_size == [-4]


def test_info_batch_size_through_the_cli(cli) -> None:
    new = cli("info", "--batch-size", "2", "--json", "--input-size", "64")
    old = cli("info", "--batch", "2", "--json", "--input-size", "64")
    assert new.returncode == 0, new.stderr
    assert new.stdout == old.stdout
    bad = cli("info", "--batch-size", "0")
    assert bad.returncode == 2 and "--batch-size: expected a positive integer" in bad.stderr
