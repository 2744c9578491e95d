r"""White-box gradient (Dirac) canaries: audit the DP mechanism itself, not what a model memorises.

``privacy.audit.canary: gradient``. Canary j is the gradient :math:`C e_{i_j}`: norm C (the clip
norm) on one coordinate :math:`i_j` of the flat parameter vector, the m coordinates distinct and
drawn uniformly before training; each canary is inserted with probability ½ (the one-run
audit's coin, :func:`~fedsim.audit.canaries.inclusion_bits`). Where it enters:

- **local DP-SGD** (``kind: examples``): canary j belongs to an honest client :math:`o_j` and is
  added to the clipped gradient sum of each DP-SGD step in which it would be sampled (Poisson:
  each step independently with probability q = B/N; shuffled batches: one step of each epoch),
  before the noise (:class:`~fedsim.privacy.dp_sgd.InsertedGradients`: the same as one more
  example whose clipped gradient is :math:`C e_{i_j}`). The auditor (the server) sees the
  client's update Δ; with SGD at learning rate η, an insertion moves coordinate
  :math:`i_j` by :math:`-\eta C / B`, so the score is

  .. math:: s_j = -\frac{B}{\eta C}\sum_r \Delta^{(r)}_{o_j}[i_j]

  over the rounds r the owner took part in so far: about the number of insertions plus
  N(0, σ²·steps) noise plus the real data's drift on that coordinate.
- **DP-FedAvg** (``kind: clients``): canary client j sends :math:`e_{i_j}`, which the server adds
  at the clip norm S to the clipped sum before the noise (like the random directions of the
  one-shot audit); the score is the coordinate of the global model's change,
  :math:`s_j = (w_t - w_0)[i_j]`, the noisy sums added up.

A canary's coordinate moves only through its insertions, the noise and the data's drift, so the
score measures the mechanism directly (Nasr, Hayes, Steinke, Balle, Tramèr, Jagielski, Carlini,
Terzis, "Tight Auditing of Differentially Private Machine Learning", USENIX Security 2023;
Steinke, Nasr, Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023,
white-box setting). Every draw comes from the scenario seed's ``Stream.AUDIT`` stream, so the
clients (each process) and the server's probe agree on every canary.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch

from fedsim.audit.canaries import audit_kind, inclusion_bits
from fedsim.errors import ScenarioError
from fedsim.privacy.dp_sgd import InsertedGradients
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, numpy_rng

__all__ = ["GradientCanaries", "canary_insertions", "gradient_canaries"]

# sub-streams of Stream.AUDIT (0-4 are fedsim.audit.canaries')
_COORDINATES, _OWNERS, _STEPS = 5, 6, 7


@dataclass(frozen=True)
class GradientCanaries:
    """Every gradient canary of a run, inserted or not.

    Attributes
    ----------
    coordinates : numpy.ndarray
        ``(m,)`` distinct flat parameter indices :math:`i_j`.
    owners : numpy.ndarray
        ``(m,)`` the honest client whose DP-SGD inserts canary j (local DP); -1 for canary
        clients (central DP).
    included : numpy.ndarray
        ``(m,)`` booleans: inserted (True) or held out.
    norm : float
        C, each canary gradient's norm (the clip norm of the mechanism it enters).
    """

    coordinates: np.ndarray
    owners: np.ndarray
    included: np.ndarray
    norm: float

    def owned_by(self, client: int) -> np.ndarray:
        """The indices of the inserted canaries ``client`` adds to its DP-SGD."""
        return np.flatnonzero(self.included & (self.owners == client))


def gradient_canaries(
    scenario: Scenario, malicious: Collection[int], dim: int
) -> GradientCanaries | None:
    """The run's gradient canaries (None unless ``privacy.audit.canary`` is ``gradient``).

    Raises
    ------
    ScenarioError
        More canaries than the model has parameters, or no honest client to own them.

    Examples
    --------
    >>> from fedsim.scenario import parse_scenario
    >>> s = parse_scenario({"name": "a", "rounds": 1, "data": {"dataset": "digits",
    ...     "num_clients": 3}, "privacy": {"local_dp": {"noise_multiplier": 1.0},
    ...     "audit": {"canaries": 4, "canary": "gradient"}}})
    >>> c = gradient_canaries(s, malicious={0}, dim=10)
    >>> len(set(c.coordinates.tolist())), set(c.owners.tolist()) <= {1, 2}, c.norm
    (4, True, 1.0)
    """
    config = scenario.privacy.audit
    if config is None or config.canary != "gradient":
        return None
    m = config.canaries
    if m > dim:
        raise ScenarioError(
            "privacy.audit.canaries", m, f"at most one gradient canary per parameter ({dim})"
        )
    coordinates = numpy_rng(scenario.seed, Stream.AUDIT, _COORDINATES).choice(
        dim, size=m, replace=False
    )
    privacy = scenario.privacy
    if audit_kind(scenario) == "clients":
        norm = privacy.central_dp.clip if privacy.central_dp is not None else 1.0
        owners = np.full(m, -1)
    else:
        honest = [c for c in range(scenario.data.num_clients) if c not in set(malicious)]
        if not honest:
            raise ScenarioError("privacy.audit", config.model_dump(), "an honest client")
        norm = privacy.local_dp.max_grad_norm if privacy.local_dp is not None else 1.0
        rng = numpy_rng(scenario.seed, Stream.AUDIT, _OWNERS)
        owners = np.asarray(honest)[rng.integers(0, len(honest), size=m)]
    return GradientCanaries(
        coordinates=coordinates.astype(np.int64),
        owners=owners,
        included=inclusion_bits(scenario, config),
        norm=float(norm),
    )


def canary_insertions(
    scenario: Scenario,
    canaries: GradientCanaries,
    client: int,
    server_round: int,
    steps: int,
    sample_rate: float,
) -> InsertedGradients | None:
    """What ``client``'s DP-SGD adds in ``server_round``: its canaries, in the steps sampling them.

    Under Poisson sampling (``privacy.local_dp.poisson_sampling``) each owned canary joins each
    of the ``steps`` steps independently with probability ``sample_rate``, as an example would;
    with shuffled batches it joins one step of each epoch, drawn uniformly. The draws come
    from ``Stream.AUDIT`` (round, client), not from the client's training generator, so the
    client's batches and noise are the ones it draws without canaries. ``None``: it owns none.

    Examples
    --------
    >>> from fedsim.scenario import parse_scenario
    >>> s = parse_scenario({"name": "a", "rounds": 1, "data": {"dataset": "digits",
    ...     "num_clients": 1}, "privacy": {"local_dp": {"noise_multiplier": 1.0},
    ...     "audit": {"canaries": 6, "canary": "gradient"}}})
    >>> c = gradient_canaries(s, malicious=(), dim=20)
    >>> g = canary_insertions(s, c, client=0, server_round=1, steps=4, sample_rate=1.0)
    >>> [sorted(t.tolist()) == sorted(c.coordinates[c.included].tolist()) for t in g.coordinates]
    [True, True, True, True]
    """
    owned = canaries.owned_by(client)
    if not len(owned):
        return None
    rng = numpy_rng(scenario.seed, Stream.AUDIT, _STEPS, server_round, client)
    local = scenario.privacy.local_dp
    if local is None or local.poisson_sampling:
        chosen = rng.random((steps, len(owned))) < sample_rate
    else:
        epochs = max(1, scenario.clients.local_epochs)
        per_epoch = max(1, steps // epochs)
        chosen = np.zeros((steps, len(owned)), dtype=bool)
        for epoch in range(steps // per_epoch):
            at = epoch * per_epoch + rng.integers(0, per_epoch, size=len(owned))
            chosen[at, np.arange(len(owned))] = True
    coords = canaries.coordinates[owned]
    return InsertedGradients(tuple(torch.from_numpy(coords[row]) for row in chosen), canaries.norm)
