"""The aggregator registries (kept apart so rule modules can import them without cycles).

``AGGREGATORS`` maps ``defense.aggregator`` names to rules; ``PRE_STAGES`` maps the names in
``defense.pre`` to pre-aggregation stages (bucketing, norm bounding) that run in front of any
rule.
"""

from __future__ import annotations

from fedsim.registry import Registry

__all__ = ["AGGREGATORS", "PRE_STAGES"]

AGGREGATORS: Registry[type] = Registry("aggregator")
PRE_STAGES: Registry[type] = Registry("pre-aggregation stage")
