"""Certified robustness: randomized smoothing and CRFL's parameter smoothing.

Randomized smoothing of the inputs (Cohen et al., ICML 2019) certifies against evasion; CRFL's
smoothing of the parameters (Xie et al., ICML 2021) certifies against a backdoor's trigger.

A pure core: torch and SciPy, no Flower, no ``clients``/``server`` imports.
"""

from fedsim.certify.crfl import CRFLSetting, ParameterSmoothing, crfl_radius
from fedsim.certify.smoothing import (
    Certificate,
    RandomizedSmoothing,
    certified_accuracy,
    certified_radius,
    lower_confidence_bound,
)

__all__ = [
    "CRFLSetting",
    "Certificate",
    "ParameterSmoothing",
    "RandomizedSmoothing",
    "certified_accuracy",
    "certified_radius",
    "crfl_radius",
    "lower_confidence_bound",
]
