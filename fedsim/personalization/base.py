"""What every personalized-FL method shares: one client round in and out, the registry.

A method trains one client for one round from a :class:`LocalRound` (the global weights
:math:`w^t`, the client's personal state :math:`s`, kept in its node state between rounds and
``None`` the first time, its data and how to train on it) and returns a
:class:`PersonalRound`: the weights whose difference to :math:`w^t` the client sends
(``shared``), its personal model (``personal``, evaluated on its own test split), and its new
state. Methods are plain torch on flat parameter vectors (no Flower).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from fedsim.components import Describable
from fedsim.data.transforms import Augment
from fedsim.registry import Registry
from fedsim.training import BatchLoss, TrainResult, TrainSettings, train_local

__all__ = ["LocalRound", "PERSONALIZATION", "PersonalRound", "Personalization"]


@dataclass(frozen=True)
class LocalRound:
    """What one client brings to a personalized round.

    Attributes
    ----------
    global_weights : Tensor
        Flat global weights :math:`w^t` the round starts from.
    state : Tensor or None
        The client's personal state from its previous round (a head, or a whole personal
        model); ``None`` in its first.
    x, y : Tensor
        The client's training data.
    settings : TrainSettings
        Local SGD's epochs, batch size and learning rate.
    generator : torch.Generator
        Draws the shared part's training (the client's usual ``TRAIN`` generator).
    personal_generator : torch.Generator
        Draws a separate personal model's training (Ditto's).
    augment : Augment or None
        Training-time augmentation.
    loss : BatchLoss or None
        Replaces cross-entropy (a multi-task client's summed task losses).

    Examples
    --------
    >>> model = nn.Linear(2, 2)
    >>> local = LocalRound(torch.zeros(6), None, torch.rand(8, 2), torch.tensor([0, 1] * 4),
    ...     TrainSettings(1, 4, 0.5), torch.Generator().manual_seed(0), torch.Generator())
    >>> local.train(model).steps  # one epoch of 8 examples in batches of 4
    2
    """

    global_weights: torch.Tensor
    state: torch.Tensor | None
    x: torch.Tensor
    y: torch.Tensor
    settings: TrainSettings
    generator: torch.Generator
    personal_generator: torch.Generator
    augment: Augment | None = None
    loss: BatchLoss | None = None

    def train(
        self,
        model: nn.Module,
        settings: TrainSettings | None = None,
        generator: torch.Generator | None = None,
        loss: BatchLoss | None = None,
    ) -> TrainResult:
        """Local SGD of ``model`` on the client's data; an argument left ``None`` is the round's."""
        return train_local(
            model,
            self.x,
            self.y,
            self.settings if settings is None else settings,
            self.generator if generator is None else generator,
            self.augment,
            None,
            self.loss if loss is None else loss,
        )


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
    def __call__(self, model: nn.Module, local: LocalRound) -> PersonalRound:
        """Train ``model`` (used as scratch space) for the client's round ``local``."""


PERSONALIZATION: Registry[type[Personalization]] = Registry("personalization method")
