r"""Federated denoising score matching: FedAvg of the score network over the clients' images.

The diffusion purifier's score network :math:`\varepsilon_\theta` can be trained centrally on a
pool the server holds (:func:`~fedsim.purification.diffusion.training.train_score_net`) or,
here, by K clients on their own images with FedAvg (McMahan, Moore, Ramage, Hampson and
Agüera y Arcas, "Communication-efficient learning of deep networks from decentralized data",
AISTATS 2017). In each of R rounds every client k with :math:`n_k > 0` images starts from the
global weights :math:`\theta^r`, runs E Adam steps on its own DSM loss (:func:`dsm_loss`, a
minibatch of its images drawn with replacement), and the server averages

.. math:: \theta^{r+1} = \sum_{k} \frac{n_k}{n}\, \theta_k^{r,E}, \qquad n = \sum_k n_k.

Each client keeps its own Adam moments across rounds (a stateful client) and decays its
learning rate linearly over its R·E steps, as the central trainer does over its steps; so with
one client and E = 1 this is central training, step for step (the unit test's invariant).
Client k draws only from ``generators[k]``. Skewed (non-IID) partitions make each client's
score model fit its own label mix; the average is what the purifier uses. Pure torch; no
client data leaves :func:`federated_score_training` (only weights are averaged).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.purification.diffusion.sde import VPSDE
from fedsim.purification.diffusion.training import dsm_step
from fedsim.validation import require_int, require_real

__all__ = ["federated_score_training"]

RULE = "federated score training"


def federated_score_training(
    net: nn.Module,
    sde: VPSDE,
    clients: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator],
    rounds: int = 60,
    local_steps: int = 10,
    batch_size: int = 16,
    lr: float = 2e-3,
) -> list[float]:
    r"""Train ``net`` in place by FedAvg over ``clients`` (data scale [−1, 1]); round losses.

    Parameters
    ----------
    net : nn.Module
        The global score network :math:`\varepsilon_\theta(x_t, t)`, trained in place and left
        in eval mode.
    sde : VPSDE
        The forward process.
    clients : sequence of Tensor
        Client k's images ``(n_k, C, H, W)``; an empty one takes no part (weight 0).
    generators : sequence of torch.Generator
        Client k's draws (minibatches, times, noise), one generator per client.
    rounds, local_steps, batch_size : int
        R rounds of E local Adam steps on minibatches of ``batch_size``.
    lr : float
        Adam's initial learning rate, decayed linearly to 0 over each client's R·E steps.

    Returns
    -------
    list of float
        Per round, the clients' mean DSM loss over their local steps, weighted by n_k.

    Raises
    ------
    InvalidSettingError
        No client, a count of generators other than the clients', no client with images,
        images of different shapes, or a setting out of range.

    Examples
    --------
    >>> from fedsim.purification.diffusion.score_net import ScoreNet
    >>> _ = torch.manual_seed(0)
    >>> net = ScoreNet(1, 8, 8)
    >>> clients = [torch.rand(6, 1, 8, 8) * 2 - 1, torch.rand(3, 1, 8, 8) * 2 - 1]
    >>> gens = [torch.Generator().manual_seed(k) for k in range(2)]
    >>> losses = federated_score_training(net, VPSDE(), clients, gens, rounds=2, local_steps=1)
    >>> len(losses), all(v > 0 for v in losses)
    (2, True)
    >>> federated_score_training(net, VPSDE(), clients, gens, rounds=0)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: federated score training needs an integer rounds >= 1, got 0
    """
    rounds = require_int(RULE, "rounds", rounds, minimum=1)
    local_steps = require_int(RULE, "local_steps", local_steps, minimum=1)
    batch_size = require_int(RULE, "batch_size", batch_size, minimum=1)
    lr = require_real(RULE, "lr", lr, low=0.0, low_open=True)
    if not clients:
        raise InvalidSettingError(f"{RULE} needs at least one client, got none")
    if len(generators) != len(clients):
        raise InvalidSettingError(
            f"{RULE} needs one generator per client, got {len(generators)} for "
            f"{len(clients)} clients"
        )
    sizes = [int(x.shape[0]) for x in clients]
    total = sum(sizes)
    if total == 0:
        raise InvalidSettingError(f"{RULE} needs a client with images, every client has none")
    shapes = {tuple(x.shape[1:]) for x in clients if x.shape[0]}
    if len(shapes) != 1:
        raise InvalidSettingError(f"{RULE} needs images of one shape, got {sorted(shapes)}")
    active = [k for k, n in enumerate(sizes) if n]
    local = {k: copy.deepcopy(net) for k in active}
    optimizers = {k: torch.optim.Adam(local[k].parameters(), lr=lr) for k in active}
    horizon = rounds * local_steps
    schedules = {
        k: torch.optim.lr_scheduler.LambdaLR(optimizers[k], lambda s: 1.0 - s / horizon)
        for k in active
    }
    losses = []
    for _ in range(rounds):
        global_state = net.state_dict()
        states, round_loss = [], 0.0
        for k in active:
            model = local[k]
            model.load_state_dict(global_state)
            model.train()
            for _ in range(local_steps):
                loss = dsm_step(
                    model, sde, clients[k], optimizers[k], schedules[k], batch_size, generators[k]
                )
                round_loss += sizes[k] / total * loss / local_steps
            states.append((sizes[k] / total, model.state_dict()))
        net.load_state_dict(_weighted_average(states))
        losses.append(round_loss)
    net.eval()
    return losses


def _weighted_average(
    states: Sequence[tuple[float, dict[str, torch.Tensor]]],
) -> dict[str, torch.Tensor]:
    """Σ_k w_k · state_k per entry (floating entries; others taken from the first state)."""
    first = states[0][1]
    out = {}
    for name, value in first.items():
        if not torch.is_floating_point(value):
            out[name] = value.clone()
            continue
        out[name] = sum(w * state[name] for w, state in states)
    return out
