"""``unetkit report``: one self-contained page, opened in a real (headless) browser.

The browser test needs Chromium (Debian's ``chromium``; ``.ci/run`` installs it). Where it is
absent the test is skipped, except under CI (``CI=true``), where it fails. Its screenshot is
kept in ``test-artifacts/report.png`` (ignored by git).
"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.report.browser import Browser, find_chromium
from unetkit.errors import UnetkitError
from unetkit.report import write_report
from unetkit.workflow import fit

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
TINY = [
    "model.widths=[4,8]",
    "data.synthetic_count=8",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "data.val_fraction=0.4",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.threads=1",
    "train.epochs=2",
    "train.int8_calibration=false",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run (train writes its report.html at the end)."""
    out = tmp_path_factory.mktemp("report") / "run"
    fit(None, out, overrides=TINY, quiet=True)
    return out


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "poster", "data"):
                self.refs.append((tag, name, value or ""))


def test_train_writes_a_self_contained_report(run: Path) -> None:
    page = (run / "report.html").read_text(encoding="utf-8")
    refs = _Refs()
    refs.feed(page)
    images = [v for tag, name, v in refs.refs if tag == "img"]
    assert len(images) >= 1 + 3 * 3  # curves, and image + truth + prediction per overlay
    assert all(v.startswith("data:image/png;base64,") for v in images)
    assert [r for r in refs.refs if r[0] != "img"] == []  # no link, no external script
    assert "link" not in refs.tags and "iframe" not in refs.tags
    for section in ("Training curves", "Metrics per image (worst first)", "Model card",
                    "Architecture (unetkit info)", "Resolved config", "label opacity"):  # fmt: skip
        assert section in page
    marker = json.loads((run / ".unetkit-run.json").read_text())
    assert "report.html" in marker["entries"]  # --overwrite knows it is the run's


def test_per_image_table_puts_the_worst_first_and_evaluation_is_included(
    run: Path, tmp_path: Path
) -> None:
    from unetkit.report import collect

    content = collect(run)
    dice = [row["dice"] for row in content.per_image]
    assert len(dice) >= 3 and dice == sorted(dice)
    evaluation = {
        "mean": {"dice": 0.5},
        "per_class": {
            "0": {"dice": 0.9, "iou": 0.8, "hd95": 1.0},
            "1": {"dice": 0.25, "iou": 0.2, "hd95": None},
        },
        "per_image": [
            {"name": "good", "pixel_error": 0.1, "per_class": {"1": {"dice": 0.9}}},
            {"name": "bad", "pixel_error": 0.4, "per_class": {"1": {"dice": 0.1}}},
        ],
    }
    file = tmp_path / "eval.json"
    file.write_text(json.dumps(evaluation))
    page = write_report(run, tmp_path / "r.html", evaluation=file).read_text(encoding="utf-8")
    eval_table = page[page.index('id="eval-images"') :]
    assert eval_table.index("bad") < eval_table.index("good")
    assert "eval hd95" in page


def test_not_a_run_and_a_bad_evaluation_are_refused_without_writing(
    run: Path, tmp_path: Path, cli
) -> None:
    with pytest.raises(UnetkitError, match="not a unetkit run"):
        write_report(tmp_path, tmp_path / "r.html")
    done = cli("report", str(tmp_path), "--out", str(tmp_path / "r.html"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "not a unetkit run (no config.yaml and model.safetensors)" in done.stderr
    (tmp_path / "e.json").write_text("[1, 2]")
    with pytest.raises(UnetkitError, match="not an 'unetkit evaluate --json' file"):
        write_report(run, tmp_path / "r.html", evaluation=tmp_path / "e.json")
    mine = tmp_path / "notes.html"
    mine.write_text("<p>mine</p>")
    done = cli("report", str(run), "--out", str(mine))
    assert done.returncode == 2 and "unetkit never replaces it" in done.stderr
    assert mine.read_text() == "<p>mine</p>" and not (tmp_path / "r.html").exists()


def test_report_renders_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    browser = Browser(binary, tmp_path / "profile")
    try:
        browser.open((run / "report.html").resolve().as_uri())
        images = browser.evaluate(
            "[...document.images].map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        assert len(images) >= 10
        assert [alt for alt, done, width in images if not (done and width > 0)] == []
        # the opacity control reaches every label layer
        browser.evaluate("setOpacity(0)")
        assert set(browser.evaluate(
            "[...document.querySelectorAll('img.layer')].map(i => i.style.opacity)"
        )) == {"0"}  # fmt: skip
        # sorting: a click on the per-image Dice header sorts that column
        order = browser.evaluate(
            "(() => { const t = document.getElementById('per-image');"
            " const th = [...t.tHead.rows[0].cells].find(c => c.textContent === 'dice');"
            " th.click(); th.click();"
            " return [...t.tBodies[0].rows].map(r => parseFloat(r.cells[th.cellIndex].dataset.v));"
            " })()"
        )
        assert order == sorted(order, reverse=True) and len(order) >= 3
        browser.evaluate("setOpacity(50)")
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "report.png")
        assert (ARTIFACTS / "report.png").read_bytes()[:4] == b"\x89PNG"
        assert browser.errors() == []
    finally:
        browser.close()
