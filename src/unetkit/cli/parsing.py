"""The command line's vocabulary and the argument clean-up every subcommand shares.

Two rules, applied by :class:`unetkit.cli.OneLineParser` before argparse sees the arguments:

* **One spelling per flag.** :data:`RENAMED` maps an old spelling to the one spelling used by
  every command (``--output`` -> ``--out``, ``--batch`` -> ``--batch-size``). The old spelling
  still works for one release, in every command that has the new one, and is not shown in
  ``--help``.
* **Values every command checks the same way** (:func:`check_values`): a ``--seed`` is a
  non-negative integer.
* **Messages name the option** (:func:`name_the_option`): a library ``ValueError`` that starts
  with an argument name (``num_classes: expected ...``) is shown with the command's option
  (``--num-classes: expected ...``).
* **``KEY=VALUE`` overrides are never swallowed** by an option that takes several values:
  ``unetkit train --patch-size 64 64 train.lr=0.01`` gives ``--patch-size 64 64`` and the
  override ``train.lr=0.01``. Overrides are moved, in their order, in front of the other
  arguments, where argparse gives them to the ``KEY=VALUE`` positional and no option can take
  them (a token that names an existing file is a value, not an override).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

RENAMED: dict[str, str] = {
    "--output": "--out",
    "--batch": "--batch-size",
}
"""Old flag spelling -> the one spelling (kept as a hidden alias for one release)."""

_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*=")
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def is_override(token: str) -> bool:
    """True for a ``KEY=VALUE`` token that is not the name of an existing file or folder."""
    if not _OVERRIDE.match(token):
        return False
    try:
        return not Path(token).exists()
    except OSError:  # a name too long for the file system is no file
        return True


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NEGATIVE_NUMBER.match(token)


def _value_count(action: argparse.Action | None) -> int | str:
    """How many values follow the option: a number, or ``"many"`` for ``+``/``*``."""
    if action is None:
        return 0
    if action.nargs is None:
        return 1
    if isinstance(action.nargs, int):
        return action.nargs
    if action.nargs in ("+", "*"):
        return "many"
    if action.nargs == "?":
        return "optional"
    return 0


def normalise_arguments(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """``args`` with old flag spellings renamed and ``KEY=VALUE`` tokens moved to the front.

    Only for a parser without subcommands (the top-level parser passes everything after the
    command name on unchanged).
    """
    options = parser._option_string_actions
    front: list[str] = []
    overrides: list[str] = []
    tail: list[str] = []
    tokens = list(args)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            tail = tokens[i - 1 :]
            break
        if not _is_option(token):
            (overrides if is_override(token) else front).append(token)
            continue
        name, eq, value = token.partition("=")
        new = RENAMED.get(name)
        if new is not None and name not in options and new in options:
            name = new
            token = f"{name}={value}" if eq else name
        front.append(token)
        if eq:
            continue
        count = _value_count(options.get(name))
        if count == "optional":
            count = 1 if i < len(tokens) and not _is_option(tokens[i]) else 0
        if count == "many":
            while i < len(tokens) and not _is_option(tokens[i]) and not is_override(tokens[i]):
                front.append(tokens[i])
                i += 1
        else:
            taken = tokens[i : i + int(count)]
            front.extend(taken)
            i += len(taken)
    return overrides + front + tail


def check_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The usage error for a value no command accepts, or None."""
    seed = getattr(args, "seed", None)
    if "--seed" in parser._option_string_actions and isinstance(seed, int) and seed < 0:
        return f"argument --seed: expected a non-negative integer, got {seed}"
    return None


_ARGUMENT_PREFIX = re.compile(r"^([a-z][a-z_ ]*?)(?=: | \()")


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def name_the_option(parser: argparse.ArgumentParser, command: str, message: str) -> str:
    """``message`` with a leading library argument name replaced by ``command``'s option.

    ``"max_pixels: expected a positive integer"`` -> ``"--max-pixels: expected ..."``;
    ``"input size (1, 2, 3): ..."`` -> ``"--input-size (1, 2, 3): ..."``. Messages that start
    otherwise (a file name, a config key) are returned unchanged.
    """
    match = _ARGUMENT_PREFIX.match(message)
    sub = _subparser(parser, command)
    if match is None or sub is None:
        return message
    option = "--" + match.group(1).replace("_", "-").replace(" ", "-")
    if option not in sub._option_string_actions:
        return message
    return option + message[match.end(1) :]


# Messages raised deep inside torch or numpy, and what they mean for a unetkit user. Each is
# replaced in place (a leading file name stays), so the user sees the cause and the fix.
_DEEP_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"Expected more than 1 (spatial element|value per channel) when training, "
            r"got input size torch\.Size\(\[([0-9, ]+)\]\)"
        ),
        "the input is too small for this model: its deepest level is {size} pixel(s), where "
        "its normalisation needs more than one value; use images (or --tile / --input-size) of "
        "at least twice the model's downsampling factor along one axis",
    ),
    (
        re.compile(r"zip\(\) argument \d+ is (shorter|longer) than argument \d+"),
        "the sizes given do not match the number of spatial axes; give one size, or one per "
        "spatial axis",
    ),
    (
        re.compile(r"^expected non-negative integer$"),
        "a seed or count must be a non-negative integer",
    ),
)


def explain_deep_message(message: str) -> str:
    """``message`` with a known low-level error (:data:`_DEEP_MESSAGES`) put in user terms."""
    for pattern, text in _DEEP_MESSAGES:
        match = pattern.search(message)
        if match is None:
            continue
        size = "1"
        if match.lastindex and match.lastindex >= 2:
            dims = [d.strip() for d in match.group(2).split(",")][2:]
            size = "x".join(dims) or "1"
        return message[: match.start()] + text.format(size=size) + message[match.end() :]
    return message
