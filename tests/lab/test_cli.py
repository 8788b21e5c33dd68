"""``unetkit lab`` on the command line, and the report writer."""

from __future__ import annotations

import json
from pathlib import Path

from unetkit.lab import LabSettings
from unetkit.lab.common import ExperimentResult, new_figure
from unetkit.lab.report import write_report, write_result


def test_lab_writes_numbers_figure_and_paragraph(cli, tmp_path: Path) -> None:
    out = tmp_path / "lab"
    proc = cli("lab", "alignment", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "alignment.json").read_text())
    assert doc["experiment"] == "alignment" and doc["quick"] is True
    assert doc["numbers"]["unetkit_max_abs_shift"] == 0.0
    assert (out / "alignment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "alignment.png" in (out / "alignment.md").read_text()


def test_bad_input_is_one_line_error(cli, tmp_path: Path) -> None:
    proc = cli("lab", "nonsense", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("unetkit: error: EXPERIMENT") and "Traceback" not in proc.stderr
    a_file = tmp_path / "file"
    a_file.write_text("")
    proc = cli("lab", "alignment", "--quick", "--out", str(a_file))
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("lab", "spectrum", "--quick", "--out", str(tmp_path / "y"), "--data", str(tmp_path))
    assert proc.returncode == 2 and "--data" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _fake(name: str, headline: str) -> ExperimentResult:
    fig, axes = new_figure(1)
    axes[0].plot([0, 1], [1, 0])
    return ExperimentResult(name, ("P0",), headline, {"x": float("nan")}, f"para {name}", fig)


def test_report_stitches_experiments(tmp_path: Path) -> None:
    settings = LabSettings(quick=True)
    results = [_fake("one", "first finding"), _fake("two", "second finding")]
    for r in results:
        write_result(r, tmp_path, settings)
    report = write_report(results, tmp_path, settings, {"one": 1.0, "two": 2.0}).read_text()
    assert report.index("first finding") < report.index("second finding")
    assert "![two](two.png)" in report and "para one" in report
    assert json.loads((tmp_path / "one.json").read_text())["numbers"]["x"] is None  # NaN -> null
    assert not list(tmp_path.glob(".*.tmp"))
