"""The extraction-attack registry: an ``extraction.attack`` name → its class.

Examples
--------
>>> import fedsim.extraction
>>> EXTRACTION_ATTACKS.names()
['copycat', 'knockoff']
>>> EXTRACTION_ATTACKS.get("jbda")
Traceback (most recent call last):
...
fedsim.errors.UnknownNameError: unknown extraction attack 'jbda'; known: copycat, knockoff
"""

from __future__ import annotations

from fedsim.extraction.base import ExtractionAttack
from fedsim.registry import Registry

__all__ = ["EXTRACTION_ATTACKS"]

EXTRACTION_ATTACKS: Registry[type[ExtractionAttack]] = Registry("extraction attack")
"""The extraction attacks by the name a scenario's ``extraction.attack`` gives (their ``name``)."""
