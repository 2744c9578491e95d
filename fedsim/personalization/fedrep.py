r"""FedRep: the client's head first with the body frozen, then the body with the head frozen.

Collins, Hassani, Mokhtari and Shakkottai, "Exploiting Shared Representations for
Personalized Federated Learning", ICML 2021 (Algorithm 1). In round :math:`t` client
:math:`k` starts from the global body :math:`\phi^t` and its own head :math:`h_k`, runs
:math:`\tau_h` epochs of SGD on :math:`h_k` alone (``head_epochs``), then
:math:`\tau_\phi` epochs on the body alone (``clients.local_epochs``), keeps the head and
sends :math:`\Delta = (\phi_k - \phi^t, 0)`, as FedPer does. The two phases share the
client's generator (the body's shuffles follow the head's). The reported loss is the body
phase's; the step count is both phases'.

Example
-------
>>> from fedsim.params import flat_params
>>> from fedsim.training import TrainSettings
>>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
>>> w = flat_params(model)
>>> x, y = torch.rand(8, 2), torch.tensor([0, 1] * 4)
>>> local = LocalRound(w, None, x, y, TrainSettings(1, 4, 0.5),
...     torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
>>> out = FedRep(head_epochs=2)(model, local)
>>> out.result.steps, bool((out.shared - w)[9:].eq(0).all())  # 2·2 head + 2 body steps
(6, True)
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fedsim.models.multitask import head_mask
from fedsim.params import load_flat_params
from fedsim.personalization.base import (
    PERSONALIZATION,
    LocalRound,
    Personalization,
    PersonalRound,
)
from fedsim.personalization.fedper import personal_round, start_weights
from fedsim.training import TrainResult
from fedsim.validation import require_int

__all__ = ["FedRep"]


@PERSONALIZATION.register("fedrep")
class FedRep(Personalization):
    r"""FedRep with ``head_epochs`` epochs on the head before the body's.

    Parameters
    ----------
    head_epochs : int
        :math:`\tau_h` (the paper uses 10 on its image tasks).
    """

    name = "fedrep"
    local_head = True

    def __init__(self, head_epochs: int = 1) -> None:
        require_int("fedrep", "head_epochs", head_epochs, minimum=1)
        self.head_epochs = head_epochs

    def __call__(self, model: nn.Module, local: LocalRound) -> PersonalRound:
        """One FedRep round (see the module docstring)."""
        head = head_mask(model)
        load_flat_params(model, start_weights(local.global_weights, head, local.state))
        params = list(model.parameters())
        in_head = [bool(part.all()) for part in torch.split(head, [p.numel() for p in params])]
        head_settings = dataclasses.replace(local.settings, epochs=self.head_epochs)
        try:
            _train_only(params, in_head, True)
            first = local.train(model, head_settings)
            _train_only(params, in_head, False)
            second = local.train(model)
        finally:
            for p in params:
                p.requires_grad_(True)
        result = TrainResult(second.loss, first.steps + second.steps, second.num_examples)
        return personal_round(model, local.global_weights, head, result)


def _train_only(params: list[nn.Parameter], in_head: list[bool], head: bool) -> None:
    """Let only the head's (``head``) or only the body's parameters get gradients."""
    for p, is_head in zip(params, in_head, strict=True):
        p.requires_grad_(is_head == head)
