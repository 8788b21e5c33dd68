"""``unetkit report``: one self-contained HTML page for a run (no server, no network)."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetkit.errors import UnetkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run",
        description=(
            "Write one HTML page for a training run: the resolved config and data summary, "
            "training curves, validation overlays with an opacity control, sortable per-class "
            "and per-image metrics (worst first), the model card and the architecture table. "
            "Images are embedded; the page needs no server and no network."
        ),
    )
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by unetkit train")
    p.add_argument(
        "--evaluation", metavar="FILE", help="an 'unetkit evaluate --json' file to include"
    )
    p.add_argument("--out", metavar="FILE", help="the page to write (default RUN/report.html)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from unetkit.report import REPORT_NAME, write_report

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / REPORT_NAME
    if out.is_dir():
        raise UnetkitError(f"--out {out}: is a folder; give the .html file to write")
    if (out.exists() or out.is_symlink()) and not _is_report(out):
        raise UnetkitError(
            f"--out {out}: exists and is not a unetkit report; unetkit never replaces it. "
            f"Choose another --out file"
        )
    written = write_report(run_dir, out, evaluation=args.evaluation)
    print(f"report: {written}")
    return 0


def _is_report(path: Path) -> bool:
    """An earlier unetkit report (its first bytes say so), which may be replaced."""
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return b"<title>unetkit report:" in head
