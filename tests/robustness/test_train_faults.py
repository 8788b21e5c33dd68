"""Faults while training (``unetkit train``): kills, a full disk, damaged checkpoints, NaN,
signals, an occupied output folder, small images. Each scenario in ``train_faults`` asserts
that nothing is lost; here each also must match its row of ``docs/robustness.md``."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import DOC
from train_faults import SCENARIOS, doc_row_prefix, reference_run


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """One uninterrupted run of the tiny config, and how long its training took."""
    return reference_run(tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize(("name", "scenario"), SCENARIOS, ids=[name for name, _ in SCENARIOS])
def test_training_fault(name: str, scenario, reference, tmp_path: Path) -> None:
    run, window = reference
    fault = scenario(tmp_path, run, window)
    assert doc_row_prefix(name, fault) in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is stale for {name!r}; run tests/robustness/make_doc.py"
    )
