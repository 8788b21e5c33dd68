"""The ``unetkit`` command line: one program, one module per subcommand.

Each module in :data:`COMMANDS` exposes ``add_parser(subparsers) -> None`` and
``run(args) -> int``. User errors (:class:`unetkit.errors.UnetkitError`, ``ValueError``,
``OSError``) become one line on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from unetkit.errors import UnetkitError

COMMANDS: tuple[str, ...] = (
    "info",
    "check-data",
    "synth",
    "train",
    "predict",
    "evaluate",
    "export",
    "calibrate",
    "lab",
    "report",
    "generate",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other unetkit error:
    ``unetkit: error: argument --precision: invalid choice: 'fp16' (choose from ...)``;
    ``unetkit COMMAND --help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"unetkit: error: {message} (see '{self.prog} --help')\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Old flag spellings renamed, ``KEY=VALUE`` overrides kept out of multi-value
        options (:func:`unetkit.cli.parsing.normalise_arguments`), then argparse."""
        from unetkit.cli.parsing import check_values, normalise_arguments

        if args is None:
            args = sys.argv[1:]
        if self._subparsers is None:
            args = normalise_arguments(self, args)
        parsed, rest = super().parse_known_args(args, namespace)
        if self._subparsers is None:
            problem = check_values(self, parsed)
            if problem:
                self.error(problem)
        return parsed, rest


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    from unetkit.version import __version__

    parser = OneLineParser(
        prog="unetkit",
        description="Build, train, run, evaluate, explain and export U-Nets.",
    )
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module_name = f"unetkit.cli.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a subcommand not built yet on this branch; its siblings still work
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``unetkit`` console script; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command in ("train", "predict", "evaluate"):
        from unetkit.allocator import KEEP_BYTES, PREDICT_KEEP_BYTES, keep_freed_memory

        # large tensors reused instead of re-faulted: 9-20% faster
        keep_freed_memory(KEEP_BYTES if args.command == "train" else PREDICT_KEEP_BYTES)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("unetkit: interrupted", file=sys.stderr)
        return 130
    except (UnetkitError, ValueError, OSError) as exc:
        message = str(exc) if str(exc) else exc.__class__.__name__
        from unetkit.cli.parsing import explain_deep_message, name_the_option

        message = explain_deep_message(message)
        if isinstance(exc, ValueError) and not isinstance(exc, UnetkitError):
            message = name_the_option(parser, args.command, message)
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{exc.filename}: {message}"
        print(f"unetkit: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
