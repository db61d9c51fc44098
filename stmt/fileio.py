"""The files stmt writes, and the small files it reads, in one place.

Writing: nothing half-written ever sits under a final name, and nothing stmt
did not write is replaced or removed unless the user asks for it.

- :func:`atomic_write` (:func:`atomic_text`, :func:`atomic_savez`): one file,
  written into a temporary sibling (``.stmt-NAME.XXXX.tmp``), flushed to disk and
  renamed onto its name only when complete. A symbolic link is written through
  (its target is replaced, the link stays); a file that is replaced keeps its
  permission bits and owner; a target that is not a regular file (``/dev/null``,
  ``/dev/full``, a FIFO someone reads) is written into, never replaced. An error
  while writing (a full disk) is one :class:`~stmt.errors.InputError` naming the file.
- :func:`check_output`: an output that cannot be written is refused before any work.
- Output folders (:func:`check_folder`, :func:`claim_folder`, :func:`new_folder`):
  a folder stmt writes into records the names it wrote in :data:`MARKER`. An
  existing folder that holds anything else is refused with one line unless the
  command was given ``--overwrite``; even then stmt only writes the names it
  writes (a file of such a name is replaced) and removes only names it wrote
  (:meth:`OutputFolder.remove` leaves the rest alone). A folder
  that does not exist yet is built as a temporary sibling and renamed into
  place when complete (:func:`new_folder`).

Reading small inputs (joint maps, configs, annotations, checkpoints, markers):
:func:`input_file` takes regular files only (a FIFO, a device or a folder is one
line, never a hang or an endless read); :func:`read_bytes` checks the size before
reading and reads no more than the cap; :func:`decode_text` decodes by the
byte-order mark (UTF-8, UTF-16, UTF-32; UTF-16 without one by its zero bytes),
else as UTF-8, with one clear line for bytes that are not; :func:`load_yaml`
refuses YAML whose aliases would expand past a cap (an "alias bomb").
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import yaml

from stmt import limits
from stmt.errors import InputError

TEMP_PREFIX = ".stmt-"  # temporary files and folders stmt makes (and its marker) start so
MARKER = ".stmt-output.json"  # the names stmt wrote in a folder


def _plain_mode(directory: bool = False) -> int:
    """The mode a plain ``open()`` / ``mkdir()`` would give (mkstemp/mkdtemp use 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _strerror(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def write_target(path: str | Path, follow: bool = True) -> Path:
    """The file a write to ``path`` lands in: ``path`` with symbolic links resolved (a
    dangling link names the file it will create; with ``follow=False`` only the folders
    are resolved, and a link of that name is replaced). InputError for a link loop."""
    path = Path(path)
    real = (
        Path(os.path.realpath(path)) if follow else Path(os.path.realpath(path.parent)) / path.name
    )
    if follow and real.is_symlink():  # realpath stops at a loop
        raise InputError(path, "is a symbolic link that loops back on itself")
    return real


def _read_only(target: Path) -> bool:
    """No write permission bit at all (even root keeps its hands off), or none for us."""
    return not (os.stat(target).st_mode & 0o222) or not os.access(target, os.W_OK)


def _temp_name(name: str) -> str:
    """The start of a temporary sibling's name: stmt's prefix and (some of) the name, short
    enough that the random part and suffix keep it within a file system's 255 bytes."""
    return f"{TEMP_PREFIX}{os.fsencode(name)[:120].decode(errors='ignore') or 'x'}."


def _is_special(target: Path) -> bool:
    """True for an existing target that is neither a regular file nor a folder."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _open_special(path: Path, target: Path) -> IO[bytes]:
    """Open a device or FIFO for writing; a FIFO nobody reads is an error, not a hang."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as err:
        if stat.S_ISFIFO(os.stat(target).st_mode):
            raise InputError(
                path, "is a named pipe (FIFO) that nobody reads; not written"
            ) from None
        raise InputError(path, f"cannot be written ({_strerror(err)})") from None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


@contextmanager
def atomic_path(path: str | Path, follow: bool = True) -> Iterator[Path]:
    """A temporary file name to write ``path``'s content to (for writers that want a
    name; it ends in ``path``'s suffix). On success it is flushed to disk, given the
    mode of the file it replaces and renamed onto ``path`` through symbolic links; a
    target that is not a regular file (a device, a FIFO) gets its bytes copied in
    instead. A file the user may not write (read-only) is refused, not replaced. On any
    exception the temporary file is removed and ``path`` is left as it was; an OSError
    becomes one InputError naming ``path``. Parent folders are created. ``follow=False``:
    a symbolic link at ``path`` is replaced, not written through (stmt's own files).
    """
    path = Path(path)
    target = write_target(path, follow)
    if target.is_dir() and not target.is_symlink():
        raise InputError(path, "is a folder; expected a file name to write")
    special = follow and _is_special(target)
    if os.path.exists(target) and not target.is_symlink() and _read_only(target):
        raise InputError(path, "is read-only; not replaced (make it writable to replace it)")
    tmp = None
    try:
        where = Path(tempfile.gettempdir()) if special else target.parent
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=where, prefix=_temp_name(target.name), suffix=f".tmp{target.suffix[:16]}"
        )
        os.close(fd)
        yield Path(tmp)
        if special:
            with open(tmp, "rb") as src, _open_special(path, target) as dst:
                shutil.copyfileobj(src, dst)
        else:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _copy_mode(target, tmp)
            os.replace(tmp, target)
            tmp = None
    except OSError as err:
        raise InputError(path, f"cannot be written ({_strerror(err)})") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file object to write ``path``'s content to, :func:`atomic_path`'s way: nothing
    reaches ``path`` unless the block succeeds. Text modes write UTF-8, file names that
    are not (surrogate escapes) as their original bytes."""
    text = {} if "b" in mode else {"encoding": "utf-8", "errors": "surrogateescape"}
    with atomic_path(path) as tmp, open(tmp, mode, **text) as f:
        yield f


def _copy_mode(target: Path, tmp: str) -> None:
    """The permission bits (and, where allowed, owner) of ``target`` onto ``tmp``; the
    plain mode when ``target`` is new."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        os.chmod(tmp, _plain_mode())
        return
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    mine = os.stat(tmp)
    if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except OSError:
            pass  # not allowed to give it away: the file becomes ours, as an editor's save does


def atomic_savez(path: str | Path, **arrays) -> None:
    """``np.savez`` to ``path`` atomically."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def atomic_text(path: str | Path, text: str, follow: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8; ``follow``: as :func:`atomic_path`)."""
    with (
        atomic_path(path, follow) as tmp,
        open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f,
    ):
        f.write(text)


def check_output(path: str | Path, folder: bool = False) -> Path:
    """Refuse, before any work is done, an output ``path`` that cannot be written: a
    file where a folder is wanted or the other way round, a file among its parents, a
    folder that refuses a new entry (tried: an empty folder made and removed, since
    permission bits say nothing to root or of a read-only mount), a FIFO or device
    that refuses writing. One :class:`~stmt.errors.InputError` naming it; nothing is
    left behind. Symbolic links are followed (the write goes through them)."""
    path = Path(path)
    target = write_target(path)
    if target.exists() and target.is_dir() != folder:
        if not folder and _is_special(target):
            if not os.access(target, os.W_OK):
                raise InputError(path, "cannot be written (permission denied)")
            return path
        want = "a folder to write into" if folder else "a file name to write"
        raise InputError(path, f"is a {'file' if folder else 'folder'}; expected {want}")
    for parent in [target, *target.parents] if folder else target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(path, f"cannot be written: {parent} is a file, not a folder")
            try:
                os.rmdir(tempfile.mkdtemp(dir=parent, prefix=f"{TEMP_PREFIX}write-check-"))
            except OSError as err:
                raise InputError(path, f"cannot be written in {parent}: {_strerror(err)}") from None
            break
    return path


# --------------------------------------------------------------------------- output folders
Adopt = Callable[[Path, set[str]], set[str]]


class OutputFolder:
    """A folder stmt writes into, and the names in it that stmt wrote (:data:`MARKER`)."""

    def __init__(self, path: Path, command: str, owned: set[str]):
        self.path = Path(path)
        self.command = command
        self.owned = set(owned)

    def owns(self, name: str) -> bool:
        return name in self.owned or name.startswith(TEMP_PREFIX)

    def own(self, *names: str) -> None:
        """Record ``names`` as stmt's before they are made (a kill leaves them recorded)."""
        new = {n for n in names if not self.owns(n)}
        if new:
            self.owned |= new
            self.save()

    def remove(self, name: str) -> None:
        """Remove the entry ``name`` if stmt wrote it; anything else is left alone."""
        if not self.owns(name):
            return
        p = self.path / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            p.unlink()
        if name in self.owned:
            self.owned.discard(name)
            self.save()

    def save(self) -> None:
        doc = {"written_by": "stmt", "command": self.command, "entries": sorted(self.owned)}
        atomic_text(self.path / MARKER, json.dumps(doc, indent=1) + "\n", follow=False)


def _marked(path: Path) -> set[str] | None:
    """The names the marker of ``path`` records (None: no marker, or a damaged one)."""
    marker = path / MARKER
    if os.path.lexists(marker) and not marker.is_symlink():  # stmt never writes a link there
        try:
            doc = json.loads(read_text(marker, "the stmt output marker", limits.MAX_CONFIG_BYTES))
            names = doc.get("entries") if isinstance(doc, dict) else None
            if isinstance(names, list) and all(isinstance(n, str) for n in names):
                return set(names)
        except InputError:
            pass  # a damaged marker: the folder is judged as if it had none
    return None


def _owned_names(path: Path, entries: set[str], adopt: Adopt | None) -> set[str]:
    """The names stmt wrote in ``path``: those its marker records, and those ``adopt``
    recognises by their content (outputs written before markers existed, files a run
    adds after its folder was claimed: Lightning's checkpoints)."""
    adopted = set(adopt(path, entries - (_marked(path) or set()))) if adopt is not None else set()
    return (_marked(path) or set()) | adopted


def check_folder(
    path: str | Path, command: str, overwrite: bool = False, adopt: Adopt | None = None
) -> set[str] | None:
    """Refuse an existing folder ``path`` that holds entries stmt did not write (one
    InputError line), unless ``overwrite``. Returns the names stmt wrote there (None
    when ``path`` does not exist yet). ``adopt(path, entries)`` names the entries of
    a folder that are recognisably this command's own output (with or without a marker)."""
    path = check_output(path, folder=True)
    if not path.exists():
        return None
    try:
        entries = {n for n in os.listdir(path) if not n.startswith(TEMP_PREFIX)}
    except OSError as err:
        raise InputError(path, f"cannot be listed ({_strerror(err)})") from None
    owned = _owned_names(path, entries, adopt)
    foreign = sorted(entries - owned)
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise InputError(
            path,
            f"holds files stmt did not write ({shown}); use a new or empty folder, or add "
            "--overwrite to write there anyway (files of the names stmt writes are replaced, "
            "the others kept)",
        )
    return owned


def claim_folder(
    path: str | Path, command: str, overwrite: bool = False, adopt: Adopt | None = None
) -> OutputFolder:
    """:func:`check_folder`, then create ``path`` if needed and record it as stmt's."""
    owned = check_folder(path, command, overwrite, adopt)
    path = write_target(path)  # a link to a folder (even one not made yet) stays a link
    path.mkdir(parents=True, exist_ok=True)
    folder = OutputFolder(path, command, owned or set())
    if _marked(path) != folder.owned:  # unchanged: left as it is
        folder.save()
    return folder


@contextmanager
def new_folder(
    path: str | Path, command: str, overwrite: bool = False, adopt: Adopt | None = None
) -> Iterator[OutputFolder]:
    """The folder to write an output into. A folder that does not exist yet is built as
    a temporary sibling and renamed to ``path`` when the block succeeds (removed when it
    fails); an existing one is :func:`claim_folder`'s and written in place (each file
    atomically)."""
    if check_folder(path, command, overwrite, adopt) is not None:
        yield claim_folder(path, command, overwrite, adopt)
        return
    path = write_target(path)  # a dangling link to a folder: the folder appears behind it
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_name(path.name), suffix=".tmp"))
    try:
        folder = OutputFolder(tmp, command, set())
        yield folder
        folder.save()
        os.chmod(tmp, _plain_mode(directory=True))
        try:
            os.rename(tmp, path)  # onto nothing, or an empty folder made meanwhile
        except OSError as err:
            raise InputError(path, f"cannot be written ({_strerror(err)})") from None
        folder.path = path
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- small inputs
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def input_file(path: str | Path, what: str) -> Path:
    """``path`` if it is a regular file (links followed), else one InputError saying
    what it is instead (missing, a broken link, a folder, a FIFO, a device)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if os.path.islink(path):
            raise InputError(path, f"is a broken symbolic link; expected {what}") from None
        if isinstance(err, FileNotFoundError):
            raise InputError(path, f"not found (no such file); expected {what}") from None
        raise InputError(path, f"cannot be read ({_strerror(err)})") from None
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
        raise InputError(path, f"is {kind}; expected {what}")
    return path


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (:func:`input_file`), at most ``limit`` of
    them: a larger file is one InputError, checked before it is read."""
    path = input_file(path, what)
    size = path.stat().st_size
    if size > limit:
        raise InputError(path, f"is {_size(size)}, more than the {_size(limit)} {what} may be")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # a file that grows meanwhile stops here too
    except OSError as err:
        raise InputError(path, f"cannot be read ({_strerror(err)})") from None
    if len(data) > limit:
        raise InputError(path, f"is more than the {_size(limit)} {what} may be")
    return data


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def text_encoding(head: bytes) -> tuple[str, int]:
    """``(encoding, length of the byte-order mark)`` of text starting with ``head``:
    by its byte-order mark; UTF-16 without one by its zero bytes (ASCII text in UTF-16
    has every other byte zero); else UTF-8."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    pairs = head[: len(head) // 2 * 2][:512]
    if len(pairs) >= 4:
        even, odd = pairs[0::2], pairs[1::2]
        if odd.count(0) == len(odd) and even.count(0) == 0:
            return "utf-16-le", 0
        if even.count(0) == len(even) and odd.count(0) == 0:
            return "utf-16-be", 0
    return "utf-8", 0


def decode_text(data: bytes, path: str | Path | None, what: str = "text") -> str:
    """``data`` as text (:func:`text_encoding`); InputError naming the first bad byte."""
    encoding, skip = text_encoding(data[:512])
    try:
        return data[skip:].decode(encoding)
    except UnicodeDecodeError as err:
        bad = data[skip + err.start : skip + err.start + 1]
        raise InputError(
            path,
            f"is not valid {encoding.upper()} text (byte 0x{bad.hex() or '??'} at offset "
            f"{skip + err.start}); expected {what} saved as UTF-8",
        ) from None


def read_text(path: str | Path, what: str, limit: int) -> str:
    """A small text file, bounded (:func:`read_bytes`) and decoded (:func:`decode_text`)."""
    return decode_text(read_bytes(path, what, limit), path, what)


def open_text(path: str | Path) -> IO[str]:
    """A MoCap text file opened for reading line by line in the encoding its first bytes
    say (:func:`text_encoding`; a byte-order mark is skipped). Bytes that do not decode
    become U+FFFD: the readers' strict grammar then names the line."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    encoding, skip = text_encoding(head)
    f = open(path, encoding=encoding, errors="replace", newline=None)  # noqa: SIM115 - the caller closes it
    if skip:
        f.read(1)  # the byte-order mark, one character in every encoding
    return f


def load_yaml(text: str, path: str | Path | None, what: str = "YAML") -> object:
    """``yaml.safe_load(text)``, refusing a document whose aliases would expand to more
    than :data:`stmt.limits.MAX_YAML_NODES` values, or refer to themselves; any YAML
    error is one InputError line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise InputError(path, f"not valid {what}: {first[:300]}") from None
    except RecursionError:
        raise InputError(path, f"not valid {what}: nested too deeply") from None
    if root is not None:
        _expanded_size(root, path, what)
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as err:
        first = " ".join(str(err).split()) or type(err).__name__
        raise InputError(path, f"not valid {what}: {first[:300]}") from None


def _expanded_size(root, path, what: str) -> int:
    """The number of values the node graph ``root`` stands for once its aliases are
    expanded (each shared node counted every time it is used), without expanding it."""
    cap = limits.MAX_YAML_NODES
    sizes: dict[int, int] = {}
    stack: list[tuple[object, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            if isinstance(node, yaml.MappingNode):
                kids = [n for pair in node.value for n in pair]
            else:
                kids = list(node.value)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            if sizes[key] > cap:
                raise InputError(
                    path,
                    f"its aliases expand to more than {cap:,} values (an alias bomb?); "
                    f"not read as {what}",
                )
            continue
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        if key in active:
            raise InputError(path, f"an alias refers to itself; not read as {what}")
        active.add(key)
        stack.append((node, True))
        kids = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
        )
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]
