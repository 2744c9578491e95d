"""A privacy audit's canaries, drawn from the scenario before training: which, where, whether in.

Two kinds (``privacy.audit.kind``, resolved by :func:`audit_kind`):

- **examples** (record-level DP: local DP-SGD, or a run without DP): m canary examples, each
  owned by an honest client drawn at random and inserted into that client's training data with
  probability ½ (:func:`~fedsim.membership.sampling.canary_inclusion`). A ``mislabeled``
  canary is an image of the training pool with a label drawn uniformly from the *other*
  classes; a ``noise`` canary is an image of uniform [0, 1] pixels (standardised like the
  dataset) with a uniformly drawn label. The pool image itself stays where it is (with its
  true label), so a canary is a new record either way; canaries come from neither the test set
  nor any client's partition, so the accuracy figures are measured on the same test set with
  or without an audit. :func:`insert_example_canaries` hands the inserted ones to their owners
  through :attr:`FederatedData.extra <fedsim.data.FederatedData>`, which every runtime reads.
- **clients** (client-level DP: central DP-FedAvg): m canary clients, each a random unit
  direction in parameter space (:func:`canary_direction`) inserted with probability ½; the
  server's DP-FedAvg adds the inserted ones, clipped like any update, to each round's sum
  (Andrew et al., ICLR 2024).

``canary: gradient`` (white-box Dirac canaries, either kind) lives in
:mod:`fedsim.audit.gradient`; :func:`example_canaries` then draws none.

Malicious clients own no canaries: they do not run DP-SGD, so no accounted ε covers their data.
Every draw comes from the scenario seed's ``Stream.AUDIT`` stream, so all processes of a run
(the driver, each Ray actor) draw the same canaries.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fedsim.audit.one_shot import random_canaries
from fedsim.data import Dataset, FederatedData
from fedsim.membership.sampling import canary_inclusion
from fedsim.scenario import AuditConfig, Scenario
from fedsim.seeding import Stream, derive_seed, numpy_rng

__all__ = [
    "AuditKind",
    "ExampleCanaries",
    "audit_kind",
    "canary_direction",
    "canary_participates",
    "example_canaries",
    "inclusion_bits",
    "insert_example_canaries",
]

AuditKind = Literal["examples", "clients"]

# sub-streams of Stream.AUDIT
_INCLUSION, _IMAGES, _OWNERS, _DIRECTIONS, _PARTICIPATION = range(5)


def audit_kind(scenario: Scenario) -> AuditKind | None:
    """The audit's canary kind: ``privacy.audit.kind``, with ``auto`` resolved; None: no audit.

    ``auto`` is ``clients`` when central DP is on and local DP is not, else ``examples``.
    """
    privacy = scenario.privacy
    if privacy.audit is None:
        return None
    if privacy.audit.kind != "auto":
        return privacy.audit.kind
    return "clients" if privacy.central_dp is not None and privacy.local_dp is None else "examples"


def inclusion_bits(scenario: Scenario, config: AuditConfig) -> np.ndarray:
    """``(m,)`` fair coins, drawn before training: which canaries are inserted."""
    return canary_inclusion(config.canaries, derive_seed(scenario.seed, Stream.AUDIT, _INCLUSION))


@dataclass(frozen=True)
class ExampleCanaries:
    """Every canary example of a run, inserted or not.

    Attributes
    ----------
    x : torch.Tensor
        ``(m, C, H, W)`` images, like the dataset's.
    y : torch.Tensor
        ``(m,)`` int64 canary labels.
    owners : numpy.ndarray
        ``(m,)`` the honest client that trains on each inserted canary.
    included : numpy.ndarray
        ``(m,)`` booleans: inserted (True) or held out.
    """

    x: torch.Tensor
    y: torch.Tensor
    owners: np.ndarray
    included: np.ndarray

    def per_client(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """The inserted canaries of each owning client, in canary order."""
        out = {}
        for client in np.unique(self.owners[self.included]):
            idx = torch.from_numpy(np.flatnonzero(self.included & (self.owners == client)))
            out[int(client)] = (self.x[idx], self.y[idx])
        return out


def example_canaries(
    scenario: Scenario, dataset: Dataset, malicious: Collection[int]
) -> ExampleCanaries | None:
    """The run's canary examples (None without an ``examples`` audit or without honest clients).

    Examples
    --------
    >>> from fedsim.scenario import parse_scenario
    >>> from fedsim.data import federated_data
    >>> s = parse_scenario({"name": "a", "rounds": 1, "data": {"dataset": "digits",
    ...     "num_clients": 5}, "privacy": {"audit": {"canaries": 10}}})
    >>> c = example_canaries(s, federated_data(s.data, s.seed).dataset, malicious={0})
    >>> c.x.shape, sorted(set(c.owners.tolist()) - {1, 2, 3, 4}), c.included.dtype
    (torch.Size([10, 1, 8, 8]), [], dtype('bool'))
    """
    config = scenario.privacy.audit
    if config is None or audit_kind(scenario) != "examples" or config.canary == "gradient":
        return None
    honest = [c for c in range(scenario.data.num_clients) if c not in set(malicious)]
    if not honest:
        return None
    m, classes = config.canaries, dataset.num_classes
    rng = numpy_rng(scenario.seed, Stream.AUDIT, _IMAGES)
    if config.canary == "mislabeled":
        pool = len(dataset.y_train)
        idx = torch.from_numpy(rng.choice(pool, size=m, replace=m > pool))
        x = dataset.x_train[idx].clone()
        shift = torch.from_numpy(rng.integers(1, classes, size=m))
        y = (dataset.y_train[idx] + shift) % classes
    else:
        pixels = torch.from_numpy(rng.random((m, *dataset.input_shape))).to(dataset.x_train.dtype)
        if dataset.mean is not None and dataset.std is not None:
            mean = torch.tensor(dataset.mean, dtype=pixels.dtype).view(1, -1, 1, 1)
            std = torch.tensor(dataset.std, dtype=pixels.dtype).view(1, -1, 1, 1)
            pixels = (pixels - mean) / std
        x, y = pixels, torch.from_numpy(rng.integers(0, classes, size=m))
    owner_rng = numpy_rng(scenario.seed, Stream.AUDIT, _OWNERS)
    owners = np.asarray(honest)[owner_rng.integers(0, len(honest), size=m)]
    return ExampleCanaries(
        x=x, y=y.to(torch.int64), owners=owners, included=inclusion_bits(scenario, config)
    )


def insert_example_canaries(data: FederatedData, canaries: ExampleCanaries | None) -> FederatedData:
    """``data`` whose canary owners also train on their inserted canaries (``data`` if none)."""
    if canaries is None:
        return data
    return data.with_extra(canaries.per_client())


def canary_direction(scenario: Scenario, index: int, dim: int) -> torch.Tensor:
    """Canary client ``index``'s update direction: a seeded uniformly random unit vector in R^d."""
    seed = derive_seed(scenario.seed, Stream.AUDIT, _DIRECTIONS, index)
    return random_canaries(1, dim, seed)[0]


def canary_participates(scenario: Scenario, server_round: int, count: int) -> np.ndarray:
    """``(count,)`` which canary clients take part in ``server_round``.

    Every one, except under central DP with ``amplification: poisson``, where each takes part
    independently with probability m/N like any client (the sampling the accountant assumes).
    """
    central = scenario.privacy.central_dp
    if central is None or central.amplification != "poisson":
        return np.ones(count, dtype=bool)
    rate = scenario.clients_per_round / scenario.data.num_clients
    rng = numpy_rng(scenario.seed, Stream.AUDIT, _PARTICIPATION, server_round)
    return rng.random(count) < rate
