"""Test-time purification: input transformations applied before the classifier.

``none``, ``bit_depth`` and ``median_filter`` (feature squeezing, Xu et al., NDSS 2018) and
``diffusion`` (score-based, DiffPure: Nie et al., ICML 2022; :mod:`.diffusion`), all on [0, 1]
pixel images. Attack them adaptively with BPDA + EOT (:mod:`fedsim.evasion.bpda`).
A pure core: torch only, no Flower, no ``clients``/``server`` imports.
"""

from fedsim.purification.base import Purifier
from fedsim.purification.diffusion import DiffusionPurifier
from fedsim.purification.identity import Identity
from fedsim.purification.registry import PURIFIERS, build_purifier
from fedsim.purification.squeezing import BitDepth, MedianFilter, symmetric_pad

__all__ = [
    "BitDepth",
    "DiffusionPurifier",
    "Identity",
    "MedianFilter",
    "PURIFIERS",
    "Purifier",
    "build_purifier",
    "symmetric_pad",
]
