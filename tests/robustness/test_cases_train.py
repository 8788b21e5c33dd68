"""Run folders, locks, resume and memory through the command line (real subprocesses): each
refusal is one line, suggests nothing destructive and leaves the folder tree as it was; each
scenario (second writer, SIGKILL, refused resume, failed then corrected attempt, moved data,
older run folders) keeps the user's data. The document's rows must be current."""

from __future__ import annotations

from pathlib import Path

import pytest
from cases_train import CASES, SCENARIOS, Case, check_case, row_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.area}: {c.name[:50]}")
def test_refused_without_changing_anything(case: Case, tmp_path: Path) -> None:
    line = check_case(case, tmp_path)
    assert row_of(case, line) in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is stale for {case.name!r}; run tests/robustness/make_doc.py"
    )


@pytest.mark.parametrize(("name", "scenario"), SCENARIOS, ids=[n for n, _ in SCENARIOS])
def test_scenario_keeps_the_users_data(name: str, scenario, tmp_path: Path) -> None:
    outcome = scenario(tmp_path)
    assert outcome.message and "Traceback" not in outcome.message
