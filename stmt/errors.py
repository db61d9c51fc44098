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
        super().__init__(f"{_shown(self.path)}: {message}" if self.path is not None else message)


def _shown(path: Path) -> str:
    """``path`` for the one line: a control character in a name (a newline, ESC) written
    as its escape, so the line stays one line; other names as they are (bytes that are
    not UTF-8 stay surrogate escapes, printed as those bytes)."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or "\udc80" <= c <= "\udcff" else repr(c)[1:-1] for c in text
    )
