"""``unetkit check-data DIR``: read every image/mask pair and list every problem.

Exit status 0 when the dataset is usable (warnings allowed), 2 when it has problems.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``check-data`` on the top-level subparsers."""
    parser = subparsers.add_parser(
        "check-data",
        help="check a dataset folder (images/ and masks/) and list every problem",
        description="Read every image/mask pair of DIR and report sizes, channels, class "
        "frequencies and every problem, each naming its file. Exit status 2 if there are "
        "problems.",
    )
    parser.add_argument("dir", metavar="DIR", help="dataset folder with images/ and masks/")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        metavar="K",
        help="expected number of classes (labels 0..K-1); default: inferred",
    )
    parser.add_argument(
        "--spatial-dims",
        type=int,
        choices=(1, 2, 3),
        default=None,
        metavar="D",
        help="spatial dims of the files (1, 2 or 3); default: inferred per file",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="largest image accepted, in pixels (guard against huge files)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check ``args.dir``; print the report; 0 if clean, 2 if there are problems."""
    from unetkit.data.dataset import check_dataset

    report = check_dataset(
        args.dir,
        num_classes=args.num_classes,
        spatial_dims=args.spatial_dims,
        max_pixels=args.max_pixels,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format())
    return 0 if report.ok else 2
