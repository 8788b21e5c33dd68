"""Bad model files: `modelfile.load`, `load_state_into`."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

from builders import _write_bytes, flip_byte, small_model_file, truncated
from catalogue_kit import ApiCase, Steps

from unetkit.errors import ModelFileError

# ----------------------------------------------------------------------------- model files


def _load_model(rel: str, build: Callable[[Path], object]) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.modelfile import load

        return load(tmp / rel)

    return Steps(lambda tmp: build(tmp / rel), call)


def _pickled(path: Path) -> None:
    import torch

    from unetkit.model import UNet, UNetConfig

    torch.save(UNet(UNetConfig(widths=(4, 8))).state_dict(), path)


def _damaged(edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        small_model_file(path)
        path.write_bytes(edit(path.read_bytes()))

    return build


def _replace_after(data: bytes, anchor: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with the first ``old`` after ``anchor`` replaced by ``new`` (same length)."""
    i = data.index(old, data.index(anchor))
    return data[:i] + new + data[i + len(old) :]


def _foreign_safetensors(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(path))


def _bad_stored_config(path: Path) -> None:
    from unetkit.modelfile import read_tensors, write_tensors

    small_model_file(path)
    tensors, meta = read_tensors(path)
    config = json.loads(meta["config"])
    config["widths"] = [4, "eight"]
    meta["config"] = json.dumps(config)
    write_tensors(path, tensors, meta)


def _mismatched_weights(path: Path) -> None:
    """A file whose stored config says widths (4, 8) but whose tensors are of (4, 16)."""
    from unetkit.modelfile import read_tensors, write_tensors

    small_model_file(path, widths=(4, 16))
    tensors, _ = read_tensors(path)
    other = path.with_name("other.safetensors")
    small_model_file(other)
    _, meta = read_tensors(other)
    other.unlink()
    write_tensors(path, tensors, meta)


def _into(build_config: dict[str, object]) -> Steps:
    """Load the weights of a saved model into a model of another architecture."""

    def call(tmp: Path) -> object:
        from unetkit.model import UNet, UNetConfig
        from unetkit.modelfile import load_state_into, read_tensors

        path = tmp / "m.safetensors"
        tensors, _ = read_tensors(path)
        model = UNet(UNetConfig(**{"widths": (4, 8), "norm": "none", **build_config}))
        return load_state_into(model, tensors, str(path))

    return Steps(lambda tmp: small_model_file(tmp / "m.safetensors"), call)


def _header_length_bomb(path: Path) -> None:
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")


CASES: list[ApiCase] = [
    ApiCase(
        "modelfile",
        "pickled .pt state dict",
        _load_model("weights.pt", _pickled),
        ("weights.pt: is a pickled PyTorch file", "arbitrary code", "import_state_dict"),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "missing file",
        _load_model("none.safetensors", lambda p: None),
        ("none.safetensors: no such model file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "run folder without a model",
        _load_model("run", lambda p: p.mkdir()),
        ("run: folder has no model.safetensors",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "truncated file",
        _load_model("cut.safetensors", _damaged(truncated)),
        ("cut.safetensors: not a readable safetensors file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "flipped byte in the weights",
        _load_model("flip.safetensors", _damaged(lambda b: flip_byte(b, -9))),
        ("flip.safetensors: checksum mismatch",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "stored config altered (dropout 0.0 -> 0.5)",
        _load_model(
            "cfg.safetensors", _damaged(lambda b: _replace_after(b, b"dropout", b"0.0", b"0.5"))
        ),
        ("cfg.safetensors: checksum mismatch in its metadata",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "flipped byte in the header",
        _load_model("head.safetensors", _damaged(lambda b: flip_byte(b, 20))),
        ("head.safetensors",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "header declaring 2**62 bytes",
        _load_model("huge.safetensors", _header_length_bomb),
        ("huge.safetensors: not a readable safetensors file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "random bytes",
        _load_model("noise.safetensors", _write_bytes(bytes(range(256)) * 4)),
        ("noise.safetensors: not a readable safetensors file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "safetensors from another tool",
        _load_model("foreign.safetensors", _foreign_safetensors),
        ("foreign.safetensors: is a safetensors file but not a unetkit model",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "stored config not valid",
        _load_model("cfg.safetensors", _bad_stored_config),
        ("cfg.safetensors: its stored model config is not valid", "widths[1]"),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights that do not fit the stored config",
        _load_model("mixed.safetensors", _mismatched_weights),
        ("mixed.safetensors: weights do not fit this architecture", "shape(s) differ", "file (16,"),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights of another class count (3 vs 2)",
        _into({"out_channels": 3}),
        ("head.weight: file (2, 4, 1, 1) vs model (3, 4, 1, 1)",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights of another architecture (3 levels vs 2)",
        _into({"widths": (4, 8, 16)}),
        ("missing",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights for 3 input channels vs 1",
        _into({"in_channels": 3}),
        ("file (4, 1, 3, 3) vs model (4, 3, 3, 3)",),
        raises=ModelFileError,
    ),
]
