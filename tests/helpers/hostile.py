"""The hypothesis settings of the hostile-input and output suites: few examples, the
same ones every run (CI stays fast and repeatable), no deadline (files are written)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

HOSTILE = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
