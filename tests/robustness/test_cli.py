"""Bad input through the command line (a real subprocess): one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import CLI_CASES, DOC, CliCase, check_cli_case, dataset, doc_row, run_in_process


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: f"{c.area.split()[-1]}: {c.name}")
def test_bad_input_on_the_command_line(case: CliCase, tmp_path: Path) -> None:
    outcome = check_cli_case(case, tmp_path)
    result = f"exit {outcome.code}" + (" (report)" if case.stream == "stdout" else "")
    row = doc_row(case.name, result, outcome.line, tmp_path)
    assert row in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is stale for {case.name!r}; run tests/robustness/make_doc.py"
    )


def test_raising_the_pixel_limit_on_the_command_line(tmp_path: Path) -> None:
    dataset(tmp_path / "ds")  # 16x16 = 256 pixels per file

    def check(*args: str, env: dict[str, str] | None = None) -> int:
        return run_in_process(["check-data", "ds", *args], tmp_path, env or {}).returncode

    assert check("--max-pixels", "255") == 2
    assert check("--max-pixels", "256") == 0
    assert check(env={"UNETKIT_MAX_PIXELS": "255"}) == 2
    assert check(env={"UNETKIT_MAX_PIXELS": "256"}) == 0
