"""Yes/no switches read from the environment, one spelling for all of them."""

from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")


def env_flag(name: str, default: bool = False) -> bool:
    """``name`` set to 1/true/yes/on (any case) is True, anything else set is False;
    unset or empty gives ``default``."""
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in _TRUE
