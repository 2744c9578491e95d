"""What a client trained on in a round, reproduced from the run's seeded streams.

The gradient-inversion probe (:mod:`server.probes.inversion`) scores a reconstruction against
the images behind the attacked update: the batch of the client's first local step
(:func:`first_batch`, drawn as its DP-SGD or plain-SGD sampler draws it), or every image it
trained on in the round (:func:`round_images`); an attack that simulates the client's local
procedure reads its settings from :func:`local_settings`.
"""

from __future__ import annotations

from typing import Any

import torch

from fedsim.federation import Federation
from fedsim.privacy.dp_sgd import draw_batches, local_steps
from fedsim.seeding import Stream, torch_generator

__all__ = ["first_batch", "local_settings", "local_step_count", "round_images"]


def first_batch(fed: Federation, client_id: int, server_round: int) -> torch.Tensor:
    """Indices of the batch of a client's first local step in ``server_round``.

    The first draw of the client's training generator (seed, TRAIN, round, client), made by the
    batch sampler DP-SGD uses (:func:`~fedsim.privacy.dp_sgd.draw_batches`): Poisson sampling
    at q = B/n for a DP-SGD client with ``poisson_sampling``, otherwise ``randperm(n)[:B]``,
    which is also plain local SGD's first batch.
    """
    scenario = fed.scenario
    n, batch_size = len(fed.data.client(client_id)[1]), scenario.clients.batch_size
    generator = torch_generator(scenario.seed, Stream.TRAIN, server_round, client_id)
    local = scenario.privacy.local_dp
    poisson = local is not None and local.poisson_sampling and client_id not in fed.malicious
    return draw_batches(n, batch_size, 1, poisson, generator)[0]


def round_images(fed: Federation, client_id: int, server_round: int) -> torch.Tensor:
    """Indices of every image a client trained on in ``server_round``.

    One local step: its first batch (:func:`first_batch`); more: its whole partition (each
    epoch of plain SGD visits every example once).
    """
    if local_step_count(fed, client_id) == 1:
        return first_batch(fed, client_id, server_round)
    return torch.arange(len(fed.data.client(client_id)[1]))


def local_step_count(fed: Federation, client_id: int) -> int:
    """T, the client's local steps per round: E·⌈n/B⌉ (SGD) or E·⌊n/B⌋ (DP-SGD)."""
    clients = fed.scenario.clients
    n, b = len(fed.data.client(client_id)[1]), clients.batch_size
    if fed.scenario.privacy.local_dp is not None and client_id not in fed.malicious:
        return local_steps(n, b, clients.local_epochs)
    return clients.local_epochs * -(-n // b)


def local_settings(fed: Federation) -> dict[str, Any]:
    """The clients' local SGD (``clients`` block), for an attack that simulates it."""
    clients = fed.scenario.clients
    return {
        "local_epochs": clients.local_epochs,
        "local_batch_size": clients.batch_size,
        "local_lr": clients.lr,
        "local_momentum": clients.momentum,
        "local_weight_decay": clients.weight_decay,
    }
