"""Exceptions with messages meant for people: each names the file, key or value at fault."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SegbenchError(Exception):
    """Base class of every error segbench raises on purpose (bad input, missing data)."""


class ConfigError(SegbenchError):
    """A suite or command-line value is wrong (unknown key, wrong type, unknown name)."""


class UnsupportedError(ConfigError):
    """A valid setting that this model, runtime or device cannot run (e.g. attention variants on a
    CNN, bf16 for a quantized LiteRT model): the cell is recorded as ``skipped`` with the reason."""


class DataError(SegbenchError):
    """A dataset is missing, incomplete or holds a broken sample.

    ``path`` is the file or folder at fault (or None), ``sample_id`` the sample concerned.
    """

    def __init__(self, message: str, path: str | None = None, sample_id: str | None = None):
        super().__init__(message)
        self.path = path
        self.sample_id = sample_id


class WeightsError(SegbenchError):
    """Model weights are missing, unreadable or do not fit the architecture."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
