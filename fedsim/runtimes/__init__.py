"""Runtimes differ only in how client work is executed: ``ray`` or ``inline``."""

from __future__ import annotations

from fedsim.runtimes.inline import InlineGrid, run_inline
from fedsim.runtimes.ray import backend_config, run_ray

__all__ = ["InlineGrid", "backend_config", "run_inline", "run_ray"]
