"""stmt: motion-capture action recognition on the body surface (STMT, CVPR 2023).

``import stmt`` is light; the heavy parts load on first use:

>>> from stmt import MeshSequence, read_sequence, Classifier  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "MeshSequence": "stmt.sequence",
    "InputError": "stmt.errors",
    "read_sequence": "stmt.reading",
    "Classifier": "stmt.inference",
}

if TYPE_CHECKING:  # pragma: no cover
    from stmt.errors import InputError
    from stmt.inference import Classifier
    from stmt.reading import read_sequence
    from stmt.sequence import MeshSequence


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stmt' has no attribute {name!r}")


__all__ = ["Classifier", "InputError", "MeshSequence", "read_sequence"]
