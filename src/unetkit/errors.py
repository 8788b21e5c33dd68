"""User-facing errors: one line that names the file or option, what is wrong and how to fix it.

The command line prints ``unetkit: error: <message>`` for these and exits with status 2, with no
traceback. Library code raises them (or ``ValueError`` for bad arguments) instead of printing.
"""

from __future__ import annotations


class UnetkitError(Exception):
    """An error caused by the user's input (a file, a folder, an option), not by a bug."""


class DataError(UnetkitError):
    """A dataset, image or mask that cannot be used as it is."""


class ConfigError(UnetkitError, ValueError):
    """A configuration key, type or value that is wrong; the message names the key."""


class ModelFileError(UnetkitError):
    """A model or checkpoint file that cannot be loaded (corrupt, foreign or unsafe)."""
