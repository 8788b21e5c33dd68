"""Frozen dataclasses to and from plain dicts and YAML, with validation that names the key.

Why this module exists: the generic machinery under both config modules
(:mod:`unetkit.model.config` for the network, :mod:`unetkit.config` for a training run), kept
apart so that ``model/`` can use it without importing anything about training.

Every configuration in unetkit is a frozen dataclass whose fields carry type hints. This module
turns nested plain data (from YAML, JSON or ``key=value`` overrides) into those dataclasses,
checking unknown keys, types and ``Literal`` choices, and back again. It imports nothing from the
rest of unetkit, so ``unetkit.model`` can use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def _show(value: Any) -> str:
    """A short ``repr`` for messages, whatever the size or nesting of ``value``."""
    return _REPR.repr(value)


def _plain_key(name: Any) -> bool:
    """A key that can be shown as is in a one-line message (else it is shown as a repr)."""
    return isinstance(name, str) and name.isprintable() and 0 < len(name) <= 60


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases: ``*name`` can build self-referencing or
    exponentially large data ("billion laughs"), and configs do not need it."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not supported in unetkit configs", mark
            )
        return super().compose_node(parent, index)


def _safe_load(text: Any) -> Any:
    """``yaml.safe_load`` without aliases; deep nesting becomes a ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


class ConfigValueError(ValueError):
    """A config key, type or value that is wrong; the message names the dotted key."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} values"
    if origin in (dict, Mapping):
        return "a mapping"
    names = {type(None): "null", int: "integer", float: "number", bool: "true/false", str: "string"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise :class:`ConfigValueError` naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigValueError(
            f"{key}: {_show(value)} is not one of {', '.join(repr(c) for c in choices)}{extra}"
        )
    if origin in (typing.Union, types.UnionType):
        errors = []
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigValueError as exc:
                errors.append(str(exc))
        raise ConfigValueError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # type: ignore[arg-type]
            return value
        if not isinstance(value, Mapping):
            raise ConfigValueError(f"{key}: expected a mapping of settings, got {_show(value)}")
        return from_dict(tp, value, prefix=key)  # type: ignore[arg-type]
    if origin is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ConfigValueError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigValueError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigValueError(f"{key}: expected a mapping, got {_show(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigValueError(f"{key}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigValueError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigValueError(f"{key}: expected a number, got {_show(value)}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigValueError(f"{key}: {_show(value)} is too large for a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigValueError(f"{key}: expected a string, got {_show(value)}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigValueError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types.

    Unknown keys, wrong types and values outside a ``Literal`` raise :class:`ConfigValueError`
    whose message starts with the dotted key (``train.lr: expected a number, got 'fast'``).
    Range checks live in each dataclass's ``__post_init__``.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        where = f"{prefix}: " if prefix else ""
        raise ConfigValueError(f"{where}expected a mapping of settings, got {_show(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        shown = name if _plain_key(name) else _show(name)
        key = f"{prefix}.{shown}" if prefix else str(shown)
        if name not in fields:
            hint = difflib.get_close_matches(str(name), list(fields), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigValueError(
                f"{key}: unknown setting{extra}; known: {', '.join(sorted(fields))}"
            )
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except ConfigValueError:
        raise
    except ValueError as exc:
        msg = str(exc)
        raise ConfigValueError(f"{prefix}.{msg}" if prefix else msg) from None


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for a dataclass, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into (``["a", "b"]``, parsed value); the value is read as YAML."""
    if "=" not in text:
        raise ConfigValueError(f"override {text!r}: expected key=value, e.g. model.depth=4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigValueError(f"override {text!r}: the key before '=' is empty")
    try:
        value = _safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``key.sub=value`` override set (YAML-typed values)."""
    out: dict[str, Any] = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            elif not isinstance(child, dict):
                raise ConfigValueError(
                    f"override {text!r}: {part!r} is a value, not a section of settings"
                )
            node = child
        node[path[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_deep_copy(v) for v in data]
    return data


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML mapping; a clear :class:`ConfigValueError` if it is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = _safe_load(fh)
    except FileNotFoundError:
        raise ConfigValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigValueError(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigValueError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigValueError(f"{path}: not valid YAML ({exc.__class__.__name__}{line})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigValueError(f"{path}: expected a mapping of settings at the top level")
    return data


def dump_yaml(data: Any) -> str:
    """YAML text for plain data or a dataclass, keys in declaration order."""
    return yaml.safe_dump(to_dict(data), sort_keys=False)
