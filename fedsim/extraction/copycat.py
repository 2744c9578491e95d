"""Copycat CNN: a surrogate trained on the victim's top-1 labels of the attacker's data."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from fedsim.extraction.base import ExtractionAttack
from fedsim.extraction.registry import EXTRACTION_ATTACKS

__all__ = ["Copycat"]


@EXTRACTION_ATTACKS.register("copycat")
class Copycat(ExtractionAttack):
    r"""Copycat CNN: label the attacker's (non-problem-domain) images with the victim's top-1.

    The attacker draws :math:`B` images from the data it holds, queries the victim and keeps
    only the top-1 label of each answer, :math:`t_i = e_{\arg\max_c a_{i,c}}` (an all-zero
    ``rounded`` row gives class 0), then trains its surrogate by cross-entropy on these
    "fake labels". With a ``top1`` victim this is the same transfer set as
    :class:`~fedsim.extraction.knockoff.KnockoffNets`; with probabilities Copycat throws
    away what Knockoff Nets uses.

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
    >>> from fedsim.training import TrainSettings
    >>> attack = Copycat(1, TrainSettings(epochs=1, batch_size=1, lr=0.1))
    >>> attack.targets(torch.tensor([[0.2, 0.5, 0.3]])).tolist()
    [[0.0, 1.0, 0.0]]

    References
    ----------
    Correia-Silva, Berriel, Badue, de Souza, Oliveira-Santos. Copycat CNN: Stealing Knowledge
    by Persuading Confession with Random Non-Labeled Data. IJCNN 2018.
    """

    name: ClassVar[str] = "copycat"

    def targets(self, answers: torch.Tensor) -> torch.Tensor:
        r"""One-hot top-1 labels :math:`e_{\arg\max_c a_{i,c}}` of the victim's answers."""
        return F.one_hot(answers.argmax(dim=1), answers.shape[1]).float()
