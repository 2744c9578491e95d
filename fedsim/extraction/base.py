"""What Knockoff Nets and Copycat share: query the victim on drawn images, train a surrogate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fedsim.extraction.queries import draw_queries
from fedsim.extraction.surrogate import check_train_settings, train_surrogate
from fedsim.extraction.victim import Victim
from fedsim.training import TrainResult, TrainSettings
from fedsim.validation import require_int

__all__ = ["ExtractionAttack", "ExtractionResult"]


@dataclass(frozen=True)
class ExtractionResult:
    """The queries an attack spent and its surrogate's training result."""

    queries: int
    train: TrainResult


class ExtractionAttack:
    r"""Base of the extraction attacks: a query budget and the surrogate's training procedure.

    Subclasses set ``name`` and may override :meth:`targets` (what the surrogate learns from
    the victim's answers).

    Parameters
    ----------
    queries : int
        The query budget :math:`B \ge 1`.
    settings : TrainSettings
        The surrogate's training procedure.
    shift : int
        Translation of re-used pool images when :math:`B` exceeds the pool
        (:func:`~fedsim.extraction.queries.draw_queries`).
    """

    name: ClassVar[str] = "extraction"

    def __init__(self, queries: int, settings: TrainSettings, shift: int = 1) -> None:
        self.queries = require_int(self.name, "queries", queries, minimum=1)
        self.settings = check_train_settings(self.name, settings)
        self.shift = require_int(self.name, "shift", shift, minimum=0)

    def targets(self, answers: torch.Tensor) -> torch.Tensor:
        """What the surrogate is trained on, from the victim's answers (default: the answers)."""
        return answers

    def transfer_set(
        self, victim: Victim, pool: torch.Tensor, queries: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``queries`` images from ``pool``, query ``victim``: ``(images, targets)``."""
        x = draw_queries(pool, queries, generator, self.shift)
        return x, self.targets(victim.query(x))

    def __call__(
        self,
        victim: Victim,
        surrogate: nn.Module,
        pool: torch.Tensor,
        generator: torch.Generator,
    ) -> ExtractionResult:
        """Spend the budget on ``victim`` and train ``surrogate`` in place on the answers."""
        x, targets = self.transfer_set(victim, pool, self.queries, generator)
        train = train_surrogate(surrogate, x, targets, self.settings, generator)
        return ExtractionResult(queries=len(x), train=train)
