"""Mimic: every malicious client copies one benign client's update."""

from __future__ import annotations

import torch

from fedsim.attacks.colluding.base import ColludingAttack, CraftedUpdates
from fedsim.attacks.registry import ATTACKS
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int

__all__ = ["Mimic"]


@ATTACKS.register("mimic")
class Mimic(ColludingAttack):
    r"""Every malicious client sends a copy of one observed update: :math:`m = \Delta_t`.

    :math:`\Delta_t` is row *t* (``target_index``) of the observed updates, which the adversary
    stage lists by client id. Over-representing one client biases the aggregate towards its
    data under heterogeneity, while every malicious update looks perfectly benign. The paper
    picks the client to mimic with a heuristic (the direction of largest variance found in
    the first rounds); this implementation uses a fixed row instead, so the same client is
    mimicked each round when the observed set is the same.

    Parameters
    ----------
    target_index : int
        *t* ≥ 0 (default 0); the round must observe more than *t* updates.

    Examples
    --------
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> Mimic(target_index=1)(u, n=5, f=2, generator=torch.Generator()).updates.tolist()
    [[3.0, 0.0, 2.0], [3.0, 0.0, 2.0]]

    References
    ----------
    Karimireddy, He, Jaggi. Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing.
    ICLR 2022.
    """

    name = "mimic"

    def __init__(self, target_index: int = 0) -> None:
        self.target_index = require_int("mimic", "target_index", target_index, minimum=0)

    def craft(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        """Return *f* copies of the observed row ``target_index``."""
        if self.target_index >= observed.shape[0]:
            raise InvalidSettingError(
                f"mimic: target_index={self.target_index} but only {observed.shape[0]} "
                "updates were observed; lower target_index or observe all benign updates"
            )
        copy = observed[self.target_index].expand(f, -1).clone()
        return CraftedUpdates(copy, {"target_index": self.target_index})
