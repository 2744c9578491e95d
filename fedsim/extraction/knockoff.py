"""Knockoff Nets (random strategy): a surrogate trained on the victim's answers, as given."""

from __future__ import annotations

from typing import ClassVar

from fedsim.extraction.base import ExtractionAttack
from fedsim.extraction.registry import EXTRACTION_ATTACKS

__all__ = ["KnockoffNets"]


@EXTRACTION_ATTACKS.register("knockoff")
class KnockoffNets(ExtractionAttack):
    r"""Knockoff Nets with the ``random`` sampling strategy.

    The attacker draws :math:`B` images uniformly from the data it holds
    (:func:`~fedsim.extraction.queries.draw_queries`), queries the victim once per image and
    trains its surrogate on the answers :math:`a_i` as they come, by the soft-label loss
    :math:`-\sum_c t_{i,c}\log\mathrm{softmax}(f_\theta(x_i))_c` with
    :math:`t_i = a_i/\sum_c a_{i,c}` (:func:`~fedsim.extraction.surrogate.train_surrogate`):
    full probabilities when the API gives them, one-hot labels when it gives only top-1.

    Parameters
    ----------
    queries : int
        The query budget :math:`B`.
    settings : TrainSettings
        The surrogate's training procedure.
    shift : int
        Translation (pixels) of re-used pool images when :math:`B` exceeds the pool.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from fedsim.extraction.victim import Victim
    >>> from fedsim.training import TrainSettings
    >>> g = torch.Generator().manual_seed(0)
    >>> victim = Victim(nn.Linear(4, 3), budget=10)
    >>> attack = KnockoffNets(8, TrainSettings(epochs=1, batch_size=4, lr=0.1))
    >>> result = attack(victim, nn.Linear(4, 3), torch.rand(20, 4), g)
    >>> result.queries, result.train.steps, victim.remaining
    (8, 2, 2)

    References
    ----------
    Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models.
    CVPR 2019.
    """

    name: ClassVar[str] = "knockoff"
