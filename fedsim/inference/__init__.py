"""Inference attacks of a federation's own members: what a client learns about others' data.

:class:`GanClassInference` (Hitaj et al., CCS 2017) draws prototypes of a class the attacker
does not hold, with the global model as its discriminator; :class:`ReferenceJudge` tells
recognisable images of a class from patterns that only fool the global model.
"""

from __future__ import annotations

from fedsim.inference.gan import GanClassInference, Generator
from fedsim.inference.judge import ReferenceJudge

__all__ = ["GanClassInference", "Generator", "ReferenceJudge"]
