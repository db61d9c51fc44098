""".npz archives read safely: never a pickle, every array's size checked from its header
before it is unpacked (:data:`stmt.limits.MAX_ARRAY_BYTES`), every failure one
:class:`~stmt.errors.InputError` naming the file. The readers of AMASS and mesh
sequences (:mod:`stmt.io`) and of SMPL-family model files (:mod:`stmt.body.smpl`)
open their files here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from stmt import limits
from stmt.errors import InputError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def open_npz(path: Path, expected: str):
    """``np.load`` an ``.npz`` without pickle, turning any failure into an InputError.

    ``expected`` ends the message for a file that is not a zip archive.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    if not head.startswith(ZIP_MAGIC):
        what = "a .npy array" if head.startswith(b"\x93NUMPY") else "not a zip archive"
        raise InputError(path, f"not a valid .npz file ({what}); {expected}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 (BadZipFile on a truncated archive, ...)
        raise InputError(path, f"not a readable .npz file, truncated or corrupt ({err})") from None
    return npz


def key_list(keys, at_most: int = 12) -> str:
    """The names of an archive's arrays for a one-line message: sorted, at most
    ``at_most`` of them, then how many more ("none" without any)."""
    keys = sorted(keys)
    more = f", ... ({len(keys) - at_most} more)" if len(keys) > at_most else ""
    return ", ".join(keys[:at_most]) + more if keys else "none"


def npz_array(npz, path: Path, key: str, what: str = "") -> np.ndarray:
    """``npz[key]`` or an InputError naming the file, the key and what was expected."""
    if key not in npz.files:
        raise InputError(
            path,
            f"missing key '{key}'{' (' + what + ')' if what else ''}; keys found: "
            f"{key_list(npz.files)}",
        )
    shape, dtype = npz_header(npz, path, key)
    size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if size > limits.MAX_ARRAY_BYTES:
        raise InputError(
            path,
            f"'{key}' would unpack to {size / 1024**3:.1f} GB (shape {shape}); "
            f"the limit for one array is {limits.MAX_ARRAY_BYTES / 1024**3:.0f} GB",
        )
    try:
        return npz[key]
    except ValueError as err:
        if "pickle" in str(err):
            raise InputError(path, f"'{key}' is a pickled object; expected a plain array") from None
        raise InputError(
            path, f"'{key}' could not be read, file truncated or corrupt ({err})"
        ) from None
    except Exception as err:  # noqa: BLE001 (zlib.error, EOFError, BadZipFile, ...)
        raise InputError(
            path, f"'{key}' could not be read, file truncated or corrupt ({err})"
        ) from None


def npz_header(npz, path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype ``npz[key]`` would have, read from the member's ``.npy``
    header without decompressing the data (so a limit can be checked first)."""
    try:
        with npz.zip.open(f"{key}.npy") as f:
            version = npy.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(f)
            else:
                shape, _, dtype = npy.read_array_header_2_0(f)
    except ValueError as err:
        if "pickle" in str(err) or "object" in str(err):
            raise InputError(path, f"'{key}' is a pickled object; expected a plain array") from None
        raise InputError(
            path, f"'{key}' could not be read, file truncated or corrupt ({err})"
        ) from None
    except Exception as err:  # noqa: BLE001 (BadZipFile, zlib.error, EOFError, ...)
        raise InputError(
            path, f"'{key}' could not be read, file truncated or corrupt ({err})"
        ) from None
    return tuple(int(d) for d in shape), np.dtype(dtype)
