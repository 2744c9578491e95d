r"""FedPer: a shared body, and a head per client that never leaves it.

Arivazhagan, Aggarwal, Singh and Choudhary, "Federated Learning with Personalization
Layers", arXiv:1912.00818 (2019). The model is split into a body :math:`\phi` (shared,
averaged by the server) and a head :math:`h_k` (client :math:`k`'s own). In round :math:`t`
client :math:`k` starts from :math:`(\phi^t, h_k)` (the global body, its own head; the
global initial head the first time), runs local SGD on both jointly, keeps the trained head
and sends :math:`\Delta = (\phi_k - \phi^t, 0)`: the head's coordinates of its update are
zero, and the server leaves the global head as initialised. The personal model is
:math:`(\phi_k, h_k)` after local training.

The head is :func:`fedsim.models.multitask.head_mask`: the last linear layer, or every task
head of a multi-task model.

Example
-------
>>> from fedsim.training import TrainSettings
>>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
>>> w = flat_params(model)
>>> x, y = torch.rand(8, 2), torch.tensor([0, 1] * 4)
>>> local = LocalRound(w, None, x, y, TrainSettings(1, 4, 0.5),
...     torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
>>> out = FedPer()(model, local)
>>> bool((out.shared - w)[9:].eq(0).all()), bool((out.shared - w)[:9].ne(0).any())
(True, True)
>>> out.state.numel(), bool(out.state.equal(out.personal[9:]))
(8, True)
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.models.multitask import head_mask
from fedsim.params import flat_params, load_flat_params
from fedsim.personalization.base import (
    PERSONALIZATION,
    LocalRound,
    Personalization,
    PersonalRound,
)

__all__ = ["FedPer", "start_weights"]


def start_weights(
    global_weights: torch.Tensor, head: torch.Tensor, state: torch.Tensor | None
) -> torch.Tensor:
    r""":math:`(\phi^t, h_k)`: the global weights with the client's head (if it has one)."""
    weights = global_weights.detach().clone().to(torch.float32)
    if state is not None:
        if state.numel() != int(head.sum()):
            raise ValueError(f"a personal head of {state.numel()} values for {int(head.sum())}")
        weights[head] = state.to(weights.dtype)
    return weights


def personal_round(
    model: nn.Module, global_weights: torch.Tensor, head: torch.Tensor, result: object
) -> PersonalRound:
    """The round of a local-head method once ``model`` is trained: keep the head, send the body."""
    trained = flat_params(model)
    shared = trained.clone()
    shared[head] = global_weights.to(shared.dtype)[head]
    return PersonalRound(shared, trained, trained[head].clone(), result)  # type: ignore[arg-type]


@PERSONALIZATION.register("fedper")
class FedPer(Personalization):
    """FedPer: joint local SGD on the global body and the client's own head."""

    name = "fedper"
    local_head = True

    def __call__(self, model: nn.Module, local: LocalRound) -> PersonalRound:
        """One FedPer round (see the module docstring)."""
        head = head_mask(model)
        load_flat_params(model, start_weights(local.global_weights, head, local.state))
        return personal_round(model, local.global_weights, head, local.train(model))
