"""Probe tests run torch on one thread, as the inversion tests do (same numbers on any machine)."""

from tests.fedsim.inversion.conftest import one_thread  # noqa: F401  (autouse fixture)
