"""Certified robustness at test time: randomized smoothing (Cohen et al., ICML 2019).

A pure core: torch and SciPy, no Flower, no ``clients``/``server`` imports.
"""

from fedsim.certify.smoothing import (
    Certificate,
    RandomizedSmoothing,
    certified_accuracy,
    certified_radius,
    lower_confidence_bound,
)

__all__ = [
    "Certificate",
    "RandomizedSmoothing",
    "certified_accuracy",
    "certified_radius",
    "lower_confidence_bound",
]
