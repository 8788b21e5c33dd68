"""A self-contained HTML report of a training run (``unetkit report``)."""

from unetkit.report.build import REPORT_NAME, collect, write_report, write_run_report

__all__ = ["REPORT_NAME", "collect", "write_report", "write_run_report"]
