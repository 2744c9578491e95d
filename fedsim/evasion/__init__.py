"""Evasion at test time (data → model): attacks in pixel space, robust accuracy, calibration,
and the adversarial-training losses honest clients call.

A pure core: torch (and ART for AutoAttack), no Flower, no ``clients``/``server`` imports.
"""

from fedsim.evasion.autoattack import AutoAttack
from fedsim.evasion.base import EvasionAttack, attack_mode
from fedsim.evasion.fgsm import FGSM
from fedsim.evasion.mifgsm import MIFGSM, Ensemble
from fedsim.evasion.pgd import PGD
from fedsim.evasion.pixel_space import PixelSpaceModel, model_in_pixel_space, to_pixel_space
from fedsim.evasion.registry import EVASION_ATTACKS, build_attack

__all__ = [
    "EVASION_ATTACKS",
    "AutoAttack",
    "Ensemble",
    "EvasionAttack",
    "FGSM",
    "MIFGSM",
    "PGD",
    "PixelSpaceModel",
    "attack_mode",
    "build_attack",
    "model_in_pixel_space",
    "to_pixel_space",
]
