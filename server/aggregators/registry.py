"""The aggregator registry (kept apart so rule modules can import it without cycles)."""

from __future__ import annotations

from fedsim.registry import Registry

__all__ = ["AGGREGATORS"]

AGGREGATORS: Registry[type] = Registry("aggregator")
