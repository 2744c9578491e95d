"""Personalized FL (``clients.personalization``): FedPer, FedRep, Ditto, local test splits.

A pure core on flat parameter vectors: what one client does in one round
(:class:`Personalization`, given a :class:`LocalRound`), registered by name
(:data:`PERSONALIZATION`); the ClientApp keeps the personal state in the node state and
reports the personal model's accuracy on the client's own test split
(:func:`local_test_split`).
"""

from fedsim.personalization.base import (
    PERSONALIZATION,
    LocalRound,
    Personalization,
    PersonalRound,
)
from fedsim.personalization.ditto import Ditto
from fedsim.personalization.fedper import FedPer
from fedsim.personalization.fedrep import FedRep
from fedsim.personalization.split import build_personalization, local_test_split

__all__ = [
    "Ditto",
    "FedPer",
    "FedRep",
    "LocalRound",
    "PERSONALIZATION",
    "PersonalRound",
    "Personalization",
    "build_personalization",
    "local_test_split",
]
