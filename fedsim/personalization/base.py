"""What every personalized-FL method shares: one client round, its result, the registry.

A method trains one client for one round from the global weights :math:`w^t` and the
client's personal state :math:`s` (kept in its node state between rounds; ``None`` the first
time) and returns a :class:`PersonalRound`: the weights whose difference to :math:`w^t` the
client sends (``shared``), its personal model (``personal``, evaluated on its own test
split), and its new state. Methods are plain torch on flat parameter vectors (no Flower).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from fedsim.components import Describable
from fedsim.data.transforms import Augment
from fedsim.registry import Registry
from fedsim.training import BatchLoss, TrainResult, TrainSettings

__all__ = ["PERSONALIZATION", "PersonalRound", "Personalization"]


@dataclass(frozen=True)
class PersonalRound:
    """One client's personalized round.

    Attributes
    ----------
    shared : Tensor
        Flat weights the client's update Δ = shared − w^t is computed from; on coordinates
        the method keeps local (a head) they equal :math:`w^t`, so Δ is zero there.
    personal : Tensor
        Flat weights of the client's personal model.
    state : Tensor
        What the client keeps for its next round (a head, or a whole personal model).
    result : TrainResult
        The round's training loss, steps and example count.
    """

    shared: torch.Tensor
    personal: torch.Tensor
    state: torch.Tensor
    result: TrainResult


class Personalization(Describable, ABC):
    """A personalized-FL method (``clients.personalization.method``)."""

    local_head: bool = False
    """Whether the model's head never leaves the client (the server keeps no trained head)."""

    @abstractmethod
    def __call__(
        self,
        model: nn.Module,
        global_weights: torch.Tensor,
        state: torch.Tensor | None,
        x: torch.Tensor,
        y: torch.Tensor,
        settings: TrainSettings,
        generator: torch.Generator,
        personal_generator: torch.Generator,
        augment: Augment | None = None,
        loss: BatchLoss | None = None,
    ) -> PersonalRound:
        """Train ``model`` (used as scratch space) for one round; see the module docstring.

        ``generator`` draws the shared part's training (the client's usual ``TRAIN``
        generator), ``personal_generator`` a separate personal model's (Ditto); ``loss``
        replaces cross-entropy (a multi-task client's summed task losses).
        """


PERSONALIZATION: Registry[type[Personalization]] = Registry("personalization method")
