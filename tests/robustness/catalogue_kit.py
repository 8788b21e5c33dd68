"""The catalogue's case types, and how a case is run, checked and shown in the document."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from unetkit.errors import UnetkitError

# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Steps:
    """``build(tmp)`` writes the bad input; ``call(tmp)`` runs the code under test on it."""

    build: Callable[[Path], object]
    call: Callable[[Path], object]


def _nothing(tmp: Path) -> None:
    return None


@dataclass(frozen=True)
class ApiCase:
    """A library call on a bad input.

    ``steps.build(tmp)`` makes the input under ``tmp``; ``steps.call(tmp)`` calls the code under
    test. For ``kind="error"`` it must raise ``raises`` (default: ``UnetkitError``); for
    ``kind="problem"``/``"warning"`` it returns the problem or warning text that the (successful)
    call reported.
    """

    area: str
    name: str
    steps: Steps
    expect: tuple[str, ...]
    raises: type[Exception] | None = None
    kind: Literal["error", "warning", "problem"] = "error"


@dataclass(frozen=True)
class CliCase:
    """``python -m unetkit ARGS`` on a bad input: exit status and the line that explains it.

    ``args(tmp)`` builds the input and returns the arguments (paths relative to ``tmp``, which
    is the working folder). ``stream`` says where the explaining line goes: ``stderr`` (one
    ``unetkit: error:`` line, nothing else) or ``stdout`` (the check-data report).

    A representative few run as a real subprocess (``subprocess=True``); the others call
    ``unetkit.cli.main`` in-process with the same working folder, environment and captured
    output, because each Python start with torch costs seconds on a shared machine.
    """

    area: str
    name: str
    args: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    code: int = 2
    stream: Literal["stderr", "stdout"] = "stderr"
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False  # else ``unetkit.cli.main`` in this process (same code, faster)


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    """What a case produced: ``error`` (class name) or ``problem``/``warning``, and the text."""

    result: str
    message: str


def run_api(case: ApiCase, tmp: Path) -> Outcome:
    """Run an API case in folder ``tmp``; an unexpected success is reported as ``result="ok"``."""
    case.steps.build(tmp)
    try:
        value = case.steps.call(tmp)
    except Exception as exc:  # the tests judge the class; the doc shows it
        return Outcome(type(exc).__name__, str(exc))
    if case.kind == "error":
        return Outcome("ok", repr(value)[:200])
    return Outcome(case.kind, str(value))


def cli_env(extra: dict[str, str]) -> dict[str, str]:
    import os

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {k: v for k, v in os.environ.items() if k != "UNETKIT_MAX_PIXELS"}
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass(frozen=True)
class CliOutcome:
    code: int
    stdout: str
    stderr: str
    line: str  # the line that explains the outcome ("" if none contains the first fragment)


# ----------------------------------------------------------------------------- checking


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line(text: str) -> bool:
    return "\n" not in text.strip() and "Traceback" not in text


def check_api_case(case: ApiCase, tmp: Path) -> Outcome:
    """Run ``case``; assert the contract of its kind; return what it produced."""
    case.steps.build(tmp)
    before = snapshot(tmp)
    try:
        value = case.steps.call(tmp)
    except Exception as exc:
        assert case.kind == "error", f"{case.name}: raised {exc!r}, expected a report"
        assert isinstance(exc, case.raises or UnetkitError), f"{case.name}: {exc!r}"
        outcome = Outcome(type(exc).__name__, str(exc))
    else:
        assert case.kind != "error", f"{case.name}: no error, returned {value!r:.200}"
        outcome = Outcome(case.kind, str(value))
    assert one_line(outcome.message), outcome.message
    for fragment in case.expect:
        assert fragment in outcome.message, (fragment, outcome.message)
    assert snapshot(tmp) == before, "the call wrote or changed files"
    return outcome


def run_in_process(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``unetkit.cli.main(args)`` with ``cwd``, ``env`` added and stdout/stderr captured."""
    import contextlib
    import os

    from unetkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.environ.pop("UNETKIT_MAX_PIXELS", None)
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def check_cli_case(case: CliCase, tmp: Path) -> CliOutcome:
    """Run ``case`` through a subprocess; assert exit status, one clear line, nothing written."""
    args = case.args(tmp)
    before = snapshot(tmp)
    if case.subprocess:
        proc = subprocess.run(
            [sys.executable, "-m", "unetkit", *args],
            cwd=tmp,
            env=cli_env(case.env),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    else:
        proc = run_in_process(args, tmp, case.env)
    both = proc.stdout + proc.stderr
    assert proc.returncode == case.code, (proc.returncode, both)
    assert "Traceback" not in both, both
    if case.stream == "stderr":
        assert proc.stderr.startswith("unetkit: error: ") and one_line(proc.stderr), proc.stderr
        line = proc.stderr.strip().removeprefix("unetkit: error: ")
    else:
        assert proc.stderr == "", proc.stderr
        hits = [
            ln.strip().removeprefix("- ") for ln in proc.stdout.splitlines() if case.expect[0] in ln
        ]
        assert hits, proc.stdout
        line = hits[0]
        assert proc.stdout.rstrip().endswith("OK" if case.code == 0 else "problem(s)")
    for fragment in case.expect:
        assert fragment in line, (fragment, line)
    assert snapshot(tmp) == before, "the command wrote or changed files"
    return CliOutcome(proc.returncode, proc.stdout, proc.stderr, line)


# ----------------------------------------------------------------------------- the document

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"


def doc_row(name: str, result: str, message: str, tmp: Path | None = None) -> str:
    """The Markdown table row for a case, paths shown relative to its folder."""
    if tmp is not None:
        message = message.replace(f"{tmp}/", "").replace(str(tmp), ".")
    cell = message.replace("|", "\\|")
    return f"| {name} | {result} | {cell} |"
