"""Extraction against the query budget: one transfer set, a fresh surrogate per budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.extraction.base import ExtractionAttack
from fedsim.extraction.metrics import extraction_metrics
from fedsim.extraction.surrogate import train_surrogate
from fedsim.extraction.victim import Victim
from fedsim.validation import require_int

__all__ = ["CurvePoint", "extraction_curve"]


class CurvePoint(NamedTuple):
    """One budget's result: ``(queries, fidelity, accuracy)``."""

    queries: int
    fidelity: float
    accuracy: float


def extraction_curve(
    attack: ExtractionAttack,
    victim: Victim,
    make_surrogate: Callable[[], nn.Module],
    pool: torch.Tensor,
    budgets: Sequence[int],
    x_eval: torch.Tensor,
    y_eval: torch.Tensor,
    generator: torch.Generator,
) -> list[CurvePoint]:
    r"""Fidelity and accuracy of ``attack``'s surrogate for each query budget in ``budgets``.

    The victim is queried once, on the largest budget's :math:`B_{\max}` images (Knockoff
    Nets' random strategy draws nested sets: a budget :math:`B`'s queries are the first
    :math:`B`), so the curve costs :math:`B_{\max}` queries. For each :math:`B` a fresh
    surrogate from ``make_surrogate()`` (same initial weights every time, if the factory is
    seeded) is trained on the first :math:`B` answers with ``attack.settings`` and a copy of
    the generator's state after the draw, so a point does not depend on which other budgets
    are on the curve. Fidelity and accuracy (:mod:`fedsim.extraction.metrics`) are measured on
    the held-out ``(x_eval, y_eval)`` with the victim's own forward pass (no budget spent).

    Parameters
    ----------
    attack : ExtractionAttack
        :class:`~fedsim.extraction.KnockoffNets` or :class:`~fedsim.extraction.Copycat`;
        its ``queries`` is ignored in favour of ``budgets``.
    victim : Victim
        The victim API; it must have :math:`B_{\max}` queries left.
    make_surrogate : callable
        Returns a fresh surrogate model.
    pool : Tensor
        The attacker's images.
    budgets : sequence of int
        Query budgets, each ``>= 1``.
    x_eval, y_eval : Tensor
        The held-out evaluation set.
    generator : torch.Generator
        The source of the queries and the shuffles.

    Returns
    -------
    list of CurvePoint
        ``(queries, fidelity, accuracy)`` in increasing order of budget.

    Examples
    --------
    >>> from fedsim.extraction import KnockoffNets
    >>> from fedsim.training import TrainSettings
    >>> torch.manual_seed(0) and None
    >>> teacher = nn.Linear(4, 3)
    >>> attack = KnockoffNets(1, TrainSettings(epochs=20, batch_size=8, lr=0.5))
    >>> pts = extraction_curve(attack, Victim(teacher), lambda: nn.Linear(4, 3),
    ...     torch.randn(50, 4), [10, 50], torch.randn(30, 4), torch.zeros(30, dtype=torch.long),
    ...     torch.Generator().manual_seed(0))
    >>> [p.queries for p in pts], pts[-1].fidelity > 0.8
    ([10, 50], True)

    References
    ----------
    Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models.
    CVPR 2019 (accuracy against the budget, their Fig. 5).
    """
    if not budgets:
        raise InvalidSettingError("extraction_curve needs at least one query budget")
    for b in budgets:
        require_int("extraction_curve", "budget", b, minimum=1)
    ordered = sorted(set(budgets))
    x, targets = attack.transfer_set(victim, pool, ordered[-1], generator)
    state = generator.get_state()
    points = []
    for b in ordered:
        surrogate = make_surrogate()
        g = torch.Generator().set_state(state)
        train_surrogate(surrogate, x[:b], targets[:b], attack.settings, g)
        m = extraction_metrics(surrogate, victim.model, x_eval, y_eval)
        points.append(CurvePoint(b, m.fidelity, m.accuracy))
    return points
