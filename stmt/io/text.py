"""What the text readers (BVH, ASF, AMC, a mesh folder's fps.txt) share: lines read
bounded, and one number grammar.

Numbers are what MoCap exporters write: an optional sign, ASCII digits with an
optional decimal point, an optional exponent (``-12``, ``0.5``, ``.5``, ``5.``,
``1e-3``, ``-1.2E+02``). Not what Python's ``float`` also accepts: ``1_0`` (10),
``nan``, ``inf``, ``infinity``, non-ASCII digits (``١٢``), ``0x10``, or a decimal
comma: those are refused with the line they are on. Frame counts and frame numbers
are whole numbers of ASCII digits.

Files are opened in the encoding their first bytes say (a UTF-8, UTF-16 or UTF-32
byte-order mark, UTF-16 by its zero bytes, else UTF-8; :func:`stmt.fileio.open_text`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from stmt.errors import InputError
from stmt.fileio import open_text

__all__ = [
    "MAX_LINE", "is_number", "not_finite", "numbers", "open_text", "read_lines", "whole_number",
]  # fmt: skip

MAX_LINE = 1 << 20  # characters in one line of a text MoCap file

_NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
NUMBER = re.compile(_NUMBER)
# a line of these characters only holds numbers in the grammar when float() takes every
# word: float() refuses whatever else they spell ("1e", "--1", "1.2.3"), and all it takes
# beyond the grammar needs another character (_, letters, non-ASCII digits)
_NUMBER_CHARS = re.compile(r"[0-9eE.+\- \t\r\n]*")
WHOLE = re.compile(r"[+]?[0-9]+")


def is_number(token: str) -> bool:
    return NUMBER.fullmatch(token) is not None


def numbers(tokens: list[str], line: str | None = None) -> list[float] | str:
    """The values of ``tokens`` (the words of ``line``, when given: checked in one pass),
    or the first token that is not a number in the grammar."""
    if line is not None and _NUMBER_CHARS.fullmatch(line):
        try:
            return [float(t) for t in tokens]
        except ValueError:
            pass
    bad = next((t for t in tokens if not is_number(t)), None)
    return [float(t) for t in tokens] if bad is None else bad


def not_finite(token: str) -> bool:
    """True for a NaN or infinity as ``float`` spells it (``nan``, ``-Inf``, ``infinity``)."""
    return token.lower().lstrip("+-") in ("nan", "inf", "infinity")


def whole_number(token: str) -> int | None:
    """``token`` as an int when it is ASCII digits (an optional ``+``), else None."""
    return int(token) if WHOLE.fullmatch(token) else None


def read_lines(f: IO[str], path: Path, first: int = 1) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` from an open text file, refusing a line over
    :data:`MAX_LINE` characters instead of reading it whole."""
    n = first
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            raise InputError(
                path, f"line {n} is longer than {MAX_LINE} characters; not a MoCap text file"
            )
        yield n, line
        n += 1
