"""`unetkit info` with bad options: the `unetkit: error:` line."""

from __future__ import annotations

from builders import _info, flip_byte
from cases_modelfile import _damaged, _pickled
from catalogue_kit import CliCase

CASES: list[CliCase] = [
    CliCase(
        "cli info",
        "unknown override key",
        _info("paddng=valid"),
        ("paddng: unknown setting (did you mean 'padding'?)",),
        subprocess=True,
    ),
    CliCase(
        "cli info",
        "wrong type",
        _info("in_channels=three"),
        ("in_channels: expected an integer, got 'three'",),
    ),
    CliCase(
        "cli info",
        "out of range",
        _info("dropout=2"),
        ("dropout: expected a probability in [0, 1)",),
    ),
    CliCase(
        "cli info",
        "override without '='",
        _info("padding"),
        ("override 'padding': expected key=value",),
    ),
    CliCase(
        "cli info",
        "pickled model",
        _info("--model", "w.pth", build=lambda t: _pickled(t / "w.pth")),
        ("w.pth: is a pickled PyTorch file",),
        subprocess=True,
    ),
    CliCase(
        "cli info",
        "corrupt model file",
        _info(
            "--model",
            "m.safetensors",
            build=lambda t: _damaged(lambda b: flip_byte(b, -9))(t / "m.safetensors"),
        ),
        ("m.safetensors: checksum mismatch",),
    ),
    CliCase(
        "cli info",
        "missing model file",
        _info("--model", "none.safetensors"),
        ("none.safetensors: no such model file",),
    ),
    CliCase(
        "cli info",
        "bad --input-size",
        _info("--input-size", "0"),
        ("--input-size: sizes must be positive",),
    ),
]
