"""Saving and loading models: safetensors weights with the config in the header; no pickle.

A model file is self-describing: its safetensors metadata holds ``format = "unetkit"``, the
``UNetConfig`` as JSON, a SHA-256 of the tensor data (checked on load, so a truncated or
corrupted file is reported, not half-loaded) and any extra JSON metadata (e.g. the
normalisation a trained model expects). Loading never executes code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from unetkit.configtools import ConfigValueError, from_dict
from unetkit.errors import ModelFileError
from unetkit.model import UNet, UNetConfig

FORMAT = "unetkit"
FORMAT_VERSION = "1"
MODEL_FILENAME = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin")
_DIGEST_KEYS = ("sha256", "sha256_metadata")


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in sorted key order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's tensors (:func:`tensors_digest` of its state dict), as recorded in
    its file; an int8 calibration records it to stay tied to the weights it was made for."""
    return tensors_digest(model.state_dict())


def metadata_digest(metadata: Mapping[str, str]) -> str:
    """SHA-256 over the metadata entries (the stored config among them), checksums excluded."""
    h = hashlib.sha256()
    for key in sorted(metadata):
        if key not in _DIGEST_KEYS:
            h.update(json.dumps([key, metadata[key]]).encode())
    return h.hexdigest()


def write_tensors(
    path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> None:
    """Write a safetensors file atomically (temporary file, fsync, rename), with checksums.

    ``sha256`` covers the tensors and ``sha256_metadata`` the other metadata entries, so a
    flipped byte anywhere but in the safetensors header's offsets is detected on read.
    """
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = dict(metadata)
    meta["sha256"] = tensors_digest(tensors)
    meta["sha256_metadata"] = metadata_digest(meta)
    data = st_save(tensors, metadata=meta)
    from unetkit.io.atomic import atomic_save_bytes

    atomic_save_bytes(path, data)


def read_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file written by :func:`write_tensors`, verifying its checksum."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(
            f"{path}: is a pickled PyTorch file; unetkit never loads pickles because loading "
            f"one can run arbitrary code. Use a unetkit .safetensors model, or convert a "
            f"trusted state dict with unetkit.modelfile.import_state_dict"
        )
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensors[key] = fh.get_tensor(key)
    except Exception as exc:  # safetensors raises several internal error types
        raise ModelFileError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): "
            f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}"
        ) from None
    expected = metadata.get("sha256")
    if expected is not None and tensors_digest(tensors) != expected:
        raise ModelFileError(f"{path}: checksum mismatch, the file is corrupt")
    expected = metadata.get("sha256_metadata")  # absent in files from before it was added
    if expected is not None and metadata_digest(metadata) != expected:
        raise ModelFileError(
            f"{path}: checksum mismatch in its metadata (stored config), the file is corrupt"
        )
    return tensors, metadata


def config_from_json(text: str, source: str) -> UNetConfig:
    """Parse a stored ``UNetConfig`` JSON, naming the file if it is not valid."""
    try:
        return from_dict(UNetConfig, json.loads(text))
    except (json.JSONDecodeError, ConfigValueError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{source}: its stored model config is not valid: {exc}") from None


def save(
    model: UNet, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Save ``model`` (weights, buffers and config) to a ``.safetensors`` file, atomically.

    ``metadata``: extra JSON-serialisable information stored under ``"extra"`` (for example the
    intensity normalisation a trained model expects); :func:`load_with_metadata` returns it.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save: {path}: model files end in .safetensors")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(dataclasses.asdict(model.config)),
        "extra": json.dumps(dict(metadata or {})),
    }
    write_tensors(path, model.state_dict(), meta)
    return path


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """A model file, or a run folder holding ``model.safetensors``."""
    p = Path(path)
    if p.is_dir():
        candidate = p / MODEL_FILENAME
        if not candidate.is_file():
            raise ModelFileError(f"{p}: folder has no {MODEL_FILENAME}; is it a unetkit run?")
        return candidate
    return p


def load_state_into(model: UNet, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model``, naming every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(tensors))
        if tuple(own[k].shape) != tuple(tensors[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape(s) differ ({'; '.join(shapes[:3])})")
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})")
        raise ModelFileError(f"{source}: weights do not fit this architecture: {'; '.join(parts)}")
    model.load_state_dict(dict(tensors), strict=True)


def load_with_metadata(path: str | os.PathLike[str]) -> tuple[UNet, dict[str, Any]]:
    """Load a model saved by :func:`save` (or a run folder) and its extra metadata."""
    p = resolve_model_path(path)
    tensors, meta = read_tensors(p)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ModelFileError(
            f"{p}: is a safetensors file but not a unetkit model (no stored config)"
        )
    config = config_from_json(meta["config"], str(p))
    from unetkit.memory import check_model_file

    check_model_file(config, str(p))  # guard: a small file may declare a huge model
    model = UNet(dataclasses.replace(config, init="default"))  # weights are overwritten
    model.config = config
    load_state_into(model, tensors, str(p))
    model.eval()
    try:
        extra = json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError:
        raise ModelFileError(f"{p}: its stored metadata is not valid JSON") from None
    return model, extra


def load(path: str | os.PathLike[str]) -> UNet:
    """Load a model saved by :func:`save`, or the best model of a run folder; in eval mode."""
    return load_with_metadata(path)[0]


def import_state_dict(
    path: str | os.PathLike[str], config: UNetConfig, *, trusted: bool = False
) -> UNet:
    """Build a ``UNet(config)`` from a PyTorch ``.pt``/``.pth`` state dict: explicit opt-in.

    Reads with ``torch.load(weights_only=True)``, which refuses arbitrary objects; still only
    for files from a source you trust. Pass ``trusted=True`` to confirm.
    """
    if not trusted:
        raise ModelFileError(
            f"{path}: importing a pickled state dict needs trusted=True (only for files whose "
            f"source you trust)"
        )
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(
            f"{path}: could not be read as a weights-only state dict: {exc}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: does not hold a state dict (a mapping of tensors)")
    model = UNet(config)
    load_state_into(model, state, str(path))
    return model.eval()
