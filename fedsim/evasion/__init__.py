"""Evasion at test time (data → model): attacks, robust accuracy, calibration, adversarial training.

Attacks work in [0, 1] pixel space; the adversarial-training losses are what honest clients call.

A pure core: torch (and ART for AutoAttack), no Flower, no ``clients``/``server`` imports. Pure
attack steps (usable under ``torch.func.vmap``) live in :mod:`fedsim.evasion.core`.
"""

from fedsim.evasion.adversarial_training import AdversarialDraw, AdversarialTraining
from fedsim.evasion.autoattack import AutoAttack
from fedsim.evasion.base import EvasionAttack, attack_mode
from fedsim.evasion.bpda import BPDA, BPDAEOT, straight_through
from fedsim.evasion.calibration import (
    ReliabilityDiagram,
    expected_calibration_error,
    reliability_diagram,
)
from fedsim.evasion.evaluation import RobustAccuracy, robust_accuracy
from fedsim.evasion.fgsm import FGSM
from fedsim.evasion.full_eot import FullEOT
from fedsim.evasion.generative import GenerativeAttack, PerturbationGenerator
from fedsim.evasion.mifgsm import MIFGSM, Ensemble
from fedsim.evasion.noise import UniformNoise
from fedsim.evasion.pgd import PGD
from fedsim.evasion.pixel_space import PixelSpaceModel, model_in_pixel_space, to_pixel_space
from fedsim.evasion.plot import plot_reliability
from fedsim.evasion.purified import OnClassifier, Purified
from fedsim.evasion.registry import EVASION_ATTACKS, build_attack
from fedsim.evasion.relation_embedding import RelationEmbedding
from fedsim.evasion.square import Square
from fedsim.evasion.task_agnostic import TaskAgnostic

__all__ = [
    "AdversarialDraw",
    "AdversarialTraining",
    "AutoAttack",
    "BPDA",
    "BPDAEOT",
    "EVASION_ATTACKS",
    "Ensemble",
    "EvasionAttack",
    "FGSM",
    "FullEOT",
    "GenerativeAttack",
    "MIFGSM",
    "OnClassifier",
    "PGD",
    "PerturbationGenerator",
    "PixelSpaceModel",
    "Purified",
    "RelationEmbedding",
    "ReliabilityDiagram",
    "RobustAccuracy",
    "Square",
    "TaskAgnostic",
    "UniformNoise",
    "attack_mode",
    "build_attack",
    "expected_calibration_error",
    "model_in_pixel_space",
    "plot_reliability",
    "reliability_diagram",
    "robust_accuracy",
    "straight_through",
    "to_pixel_space",
]
