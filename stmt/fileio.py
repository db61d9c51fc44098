"""Atomic file writes: nothing half-written is ever left under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _plain_mode() -> int:
    """The mode a plain ``open()`` would give (mkstemp creates 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed
    and ``path`` is left as it was. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, _plain_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_output(path: str | Path, folder: bool = False) -> Path:
    """Refuse, before any work is done, an output ``path`` that cannot be written: a
    file where a folder is wanted or the other way round, a file among its parents, a
    folder that refuses a new entry (tried: an empty folder made and removed, since
    permission bits say nothing to root or of a read-only mount). One
    :class:`~stmt.errors.InputError` naming it; nothing is left behind."""
    from stmt.errors import InputError

    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        want = "a folder to write into" if folder else "a file name to write"
        raise InputError(path, f"is a {'file' if folder else 'folder'}; expected {want}")
    for parent in [path, *path.parents] if folder else path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(path, f"cannot be written: {parent} is a file, not a folder")
            try:
                os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".stmt-write-check-"))
            except OSError as err:
                raise InputError(path, f"cannot be written in {parent}: {err.strerror}") from None
            break
    return path


def atomic_savez(path: str | Path, **arrays) -> None:
    """``np.savez`` to ``path`` atomically."""
    import numpy as np

    with atomic_write(path) as f:
        np.savez(f, **arrays)


def atomic_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
