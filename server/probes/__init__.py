"""Probes: what observes a run without training.

Backdoor ASR, CRFL certification, inversion, class inference, membership, audits, evasion,
extraction, watermark, memorisation.

Importing this package registers every probe in :data:`PROBES`; :class:`ProbeSet` builds the
ones a scenario configures. See :mod:`server.probes.base` for the interface.
"""

from __future__ import annotations

from fedsim.threats import DIRECTIONS, THREAT_MODELS
from server.probes import (  # noqa: F401  (each import registers its probe)
    audit,
    backdoor,
    class_inference,
    crfl,
    extraction,
    inversion,
    membership,
    memorization,
    property_inference,
    robustness,
    watermark,
)
from server.probes.base import PROBES, Probe, RevealedSum, RoundView
from server.probes.probe_set import ProbeSet

__all__ = [
    "DIRECTIONS",
    "PROBES",
    "THREAT_MODELS",
    "Probe",
    "ProbeSet",
    "RevealedSum",
    "RoundView",
]
