"""Runtimes differ only in how client work is executed: ``ray``, ``inline`` or ``vectorized``."""

from __future__ import annotations

from fedsim.run.runtimes.inline import InlineGrid, run_inline
from fedsim.run.runtimes.ray import backend_config, run_ray
from fedsim.run.runtimes.vectorized import VectorizedGrid, run_vectorized

__all__ = [
    "InlineGrid",
    "VectorizedGrid",
    "backend_config",
    "run_inline",
    "run_ray",
    "run_vectorized",
]
