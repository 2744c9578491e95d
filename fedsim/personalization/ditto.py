r"""Ditto: a personal model pulled towards the global one; the global model trained as FedAvg.

Li, Hu, Beirami and Smith, "Ditto: Fair and Robust Federated Learning Through
Personalization", ICML 2021 (Algorithm 1). Client :math:`k` trains the global model exactly
as FedAvg does (from :math:`w^t`, with its usual generator) and sends that update; besides,
it keeps a personal model :math:`v_k` (initialised to the first global model it receives)
and, each round, runs ``personal_epochs`` of SGD on

.. math:: h_k(v; w^t) = F_k(v) + \frac{\lambda}{2} \lVert v - w^t \rVert^2,

:math:`F_k` its loss. fedsim takes the regulariser's step implicitly (a proximal step after
each gradient step on :math:`F_k`, learning rate :math:`\eta`):

.. math:: v \leftarrow \frac{v + \eta\lambda\, w^t}{1 + \eta\lambda},

the same fixed point as the paper's explicit gradient on :math:`h_k`, but stable for every
:math:`\lambda` (the explicit step diverges for :math:`\eta\lambda > 2`): :math:`\lambda = 0`
is plain local training of :math:`v`, :math:`\lambda \to \infty` gives :math:`v = w^t` (the
global FedAvg model). The personal model is :math:`v_k`.

Example
-------
>>> from fedsim.training import TrainSettings
>>> model = nn.Linear(2, 2)
>>> w = flat_params(model)
>>> x, y = torch.rand(8, 2), torch.tensor([0, 1] * 4)
>>> local = LocalRound(w, None, x, y, TrainSettings(1, 4, 0.5),
...     torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
>>> bool(Ditto(lam=float("inf"))(model, local).personal.equal(w))
True
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.params import flat_params, load_flat_params
from fedsim.personalization.base import (
    PERSONALIZATION,
    LocalRound,
    Personalization,
    PersonalRound,
)
from fedsim.validation import require_int

__all__ = ["Ditto"]


@PERSONALIZATION.register("ditto")
class Ditto(Personalization):
    r"""Ditto with pull ``lam`` (λ ≥ 0, may be ``inf``) and ``personal_epochs`` on :math:`v`.

    Parameters
    ----------
    lam : float
        :math:`\lambda`.
    personal_epochs : int, optional
        Epochs on :math:`v` per round (default: the ``clients.local_epochs`` of the round).
    """

    name = "ditto"

    def __init__(self, lam: float = 0.1, personal_epochs: int | None = None) -> None:
        if not isinstance(lam, int | float) or math.isnan(lam) or lam < 0:
            raise ValueError(f"ditto needs lam ≥ 0 (or inf), got {lam!r}")
        if personal_epochs is not None:
            require_int("ditto", "personal_epochs", personal_epochs, minimum=1)
        self.lam = float(lam)
        self.personal_epochs = personal_epochs

    def __call__(self, model: nn.Module, local: LocalRound) -> PersonalRound:
        """One Ditto round (see the module docstring)."""
        global_weights, settings = local.global_weights, local.settings
        load_flat_params(model, global_weights.to(torch.float32))
        result = local.train(model)
        shared = flat_params(model)
        if math.isinf(self.lam):  # v = argmin of an infinitely strong pull: w^t itself
            personal = global_weights.detach().clone().to(torch.float32)
            return PersonalRound(shared, personal, personal, result)
        start = global_weights if local.state is None else local.state
        load_flat_params(model, start.to(torch.float32))
        device = next(model.parameters()).device
        anchors = [a.to(device) for a in _split_like(global_weights.to(torch.float32), model)]
        shrink = settings.lr * self.lam

        def pull() -> None:  # the proximal step of the previous gradient step
            with torch.no_grad():
                for p, anchor in zip(model.parameters(), anchors, strict=True):
                    p.add_(anchor, alpha=shrink).div_(1.0 + shrink)

        taken = [0]

        def personal_loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            if taken[0] and shrink:
                pull()
            taken[0] += 1
            return F.cross_entropy(m(xb), yb) if local.loss is None else local.loss(m, xb, yb)

        epochs = self.personal_epochs or settings.epochs
        personal_settings = dataclasses.replace(settings, epochs=epochs)
        local.train(model, personal_settings, local.personal_generator, personal_loss)
        if taken[0] and shrink:
            pull()
        personal = flat_params(model)
        return PersonalRound(shared, personal, personal.clone(), result)


def _split_like(flat: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
    """``flat`` cut into ``model``'s parameter shapes."""
    params = list(model.parameters())
    parts = torch.split(flat, [p.numel() for p in params])
    return [part.view_as(p) for part, p in zip(parts, params, strict=True)]
