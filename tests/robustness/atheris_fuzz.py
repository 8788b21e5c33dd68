"""Coverage-guided fuzzing with atheris (libFuzzer) of the image readers and config parser.

Usage (bounded, as the tests run it)::

    PYTHONPATH=src python tests/robustness/atheris_fuzz.py image -atheris_runs=2000
    PYTHONPATH=src python tests/robustness/atheris_fuzz.py config -atheris_runs=2000

Every input must give a result or a clear one-line error (``UnetkitError``/``ValueError``);
any other exception is a crash that libFuzzer reports (non-zero exit, reproducer written).
The run starts from a small corpus of valid files. atheris is optional (``pip install atheris``,
the ``fuzz`` extra); ``test_atheris.py`` skips when it is absent.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["unetkit.io", "unetkit.configtools", "unetkit.data"]):
    from unetkit.configtools import from_dict, load_yaml
    from unetkit.errors import UnetkitError
    from unetkit.io.images import read_image, read_mask
    from unetkit.model.config import UNetConfig

WORK = Path(tempfile.mkdtemp(prefix="unetkit-atheris-"))
SUFFIXES = (".png", ".tif", ".npy")


def _seeds(target: str) -> list[bytes]:
    import tifffile
    from PIL import Image

    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = []
    if target == "image":
        for arr in (grey, np.stack([grey] * 3, -1)):
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            out.append(b"\x00" + buf.getvalue())
        buf = io.BytesIO()
        tifffile.imwrite(buf, np.stack([grey] * 2).astype(np.uint16))
        out.append(b"\x01" + buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, grey.astype(np.float32))
        out.append(b"\x02" + buf.getvalue())
    else:
        out.append(b"widths: [4, 8]\nnorm: {type: group, groups: 2}\npadding: valid\n")
        out.append(b"act: leaky_relu\ndropout: 0.1\nspatial_dims: 3\n")
    return out


def _one_line(exc: Exception) -> None:
    if "\n" in str(exc):
        raise AssertionError(f"multi-line message: {str(exc)!r}")


def fuzz_image(data: bytes) -> None:
    if not data:
        return
    path = WORK / f"input{SUFFIXES[data[0] % 3]}"
    path.write_bytes(data[1:])
    for reader in (read_image, read_mask):
        try:
            reader(path, max_pixels=10**6)
        except (UnetkitError, ValueError) as exc:
            _one_line(exc)


def fuzz_config(data: bytes) -> None:
    path = WORK / "config.yaml"
    path.write_bytes(data)
    try:
        settings = load_yaml(str(path))
        from_dict(UNetConfig, settings)
    except ValueError as exc:
        _one_line(exc)


def main() -> None:
    target = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if target not in ("image", "config"):
        sys.exit("usage: atheris_fuzz.py {image,config} [libFuzzer options]")
    corpus = WORK / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(_seeds(target)):
        (corpus / f"seed{i}").write_bytes(seed)
    atheris.Setup([*sys.argv, str(corpus)], fuzz_image if target == "image" else fuzz_config)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
