"""``unetkit info`` through the command line, as a user runs it."""

from __future__ import annotations

import json


def test_info_paper_preset_table(cli) -> None:
    r = cli("info", "--preset", "unet2d_ronneberger2015", "--input-size", "572")
    assert r.returncode == 0, r.stderr
    assert "1x2x388x388" in r.stdout
    assert "31,030,658" in r.stdout
    assert "convolution layers      23" in r.stdout


def test_info_json_with_overrides(cli) -> None:
    r = cli(
        "info",
        "--preset",
        "unet3d_small",
        "--input-size",
        "16",
        "20",
        "24",
        "--json",
        "widths=[4,8]",
        "fusion=add",
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["config"]["widths"] == [4, 8]
    assert data["config"]["fusion"] == "add"
    assert data["output_shape"] == [1, 2, 16, 20, 24]


def test_info_bad_inputs_give_one_line_errors(cli) -> None:
    cases = [
        (["info", "paddin=valid"], "paddin: unknown setting (did you mean 'padding'?)"),
        (["info", "fusion=cat"], "fusion: 'cat' is not one of"),
        (["info", "widths=five"], "widths: expected a list"),
        (["info", "--preset", "nope"], "preset: unknown name 'nope'"),
        (
            ["info", "--preset", "unet2d_ronneberger2015", "--input-size", "570"],
            "nearest valid sizes are 556 or 572",
        ),
    ]
    for args, expected in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert expected in lines[0], lines[0]
