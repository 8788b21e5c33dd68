"""The principles lab: one experiment per claim of the design source, with numbers and figures.

``run_experiment(name, LabSettings(quick=..., seed=...)) -> ExperimentResult``; the command line
is ``unetkit lab EXPERIMENT --out DIR [--quick] [--seed S]``.
"""

from unetkit.lab.common import ExperimentResult, LabSettings
from unetkit.lab.runner import EXPERIMENTS, run_and_write, run_experiment

__all__ = ["EXPERIMENTS", "ExperimentResult", "LabSettings", "run_and_write", "run_experiment"]
