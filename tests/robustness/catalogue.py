"""The catalogue of bad inputs: ONE index of the areas whose cases drive the tests and the doc.

Each area is a module ``cases_*.py`` of this folder with a list ``CASES`` of :class:`ApiCase`
(a library call on a bad input) and/or :class:`CliCase` (``python -m unetkit ARGS`` on a bad
input). The tests of this folder run every case (one clear line, the right error class or exit
status, no traceback, nothing written) and ``make_doc.py`` writes ``docs/robustness.md`` from
the messages the code really produces, so the table and the tests cannot drift apart.

To add an area, write ``cases_<area>.py`` with its ``CASES`` and add one line to :data:`AREAS`.
Builders of bad inputs live in ``builders.py``; the case types, running and checking in
``catalogue_kit.py`` (both re-exported here for the tests that import them from ``catalogue``).
"""

from __future__ import annotations

import importlib

from builders import (  # noqa: F401  (re-exported for the tests of this folder)
    bomb_png,
    dataset,
    image_array,
    jpeg_bytes,
    jpeg_like_mask,
    mask_array,
    npy,
    png,
    png_bytes,
    small_model_file,
)
from catalogue_kit import (  # noqa: F401  (re-exported)
    DOC,
    ApiCase,
    CliCase,
    CliOutcome,
    Outcome,
    Steps,
    check_api_case,
    check_cli_case,
    cli_env,
    doc_row,
    one_line,
    run_api,
    run_in_process,
    snapshot,
)

AREAS: tuple[str, ...] = (
    "cases_images",
    "cases_dataset",
    "cases_config",
    "cases_modelfile",
    "cases_cli_check_data",
    "cases_cli_info",
    "cases_cli_train",
    "cases_cli_predict",
    "cases_cli_evaluate",
    "cases_cli_export",
    "cases_cli_options",
    "cases_restore",
    "cases_cli_report",
    "cases_instances",
    "cases_cli_generate",
    "cases_cli_predict_large",
)
"""The modules of cases, in the order of the document; one line per area."""

CASES_BY_AREA: dict[str, list[ApiCase | CliCase]] = {
    name: list(importlib.import_module(name).CASES) for name in AREAS
}
ALL_CASES: list[ApiCase | CliCase] = [c for cases in CASES_BY_AREA.values() for c in cases]
API_CASES: list[ApiCase] = [c for c in ALL_CASES if isinstance(c, ApiCase)]
CLI_CASES: list[CliCase] = [c for c in ALL_CASES if isinstance(c, CliCase)]

IMAGE_CASES: list[ApiCase] = [c for c in API_CASES if c.area in ("images", "masks")]
DATASET_CASES: list[ApiCase] = [c for c in API_CASES if c.area == "dataset"]
CONFIG_CASES: list[ApiCase] = [c for c in API_CASES if c.area == "config"]
MODELFILE_CASES: list[ApiCase] = [c for c in API_CASES if c.area == "modelfile"]
