"""Errors a user can cause.

Anything the user can get wrong (a missing file, a wrong shape, NaN in the
data, a body-model file that is not there) is raised as :class:`InputError`
with one line that names the file and says what was expected. The CLI prints
that line and exits with status 2; it never shows a traceback for it.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A user-facing error about an input file: one line, naming the file."""

    def __init__(self, path: str | Path | None, message: str):
        self.path = None if path is None else Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)
