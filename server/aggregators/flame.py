"""FLAME: cluster out dissimilar updates, clip to the median norm, add noise."""

from __future__ import annotations

import logging
from typing import Any

import torch
from sklearn.cluster import HDBSCAN

from fedsim.distances import cosine_distances
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import (
    clip_factors,
    load_generator_state,
    make_generator,
    require_int,
    require_real,
    scalar_median,
    subset_mean,
)
from server.aggregators.registry import AGGREGATORS

__all__ = ["Flame", "majority_cluster"]

log = logging.getLogger(__name__)


def majority_cluster(cos_dist: torch.Tensor) -> list[int] | None:
    """Return the rows of the largest HDBSCAN cluster, or ``None`` if every row is noise.

    HDBSCAN runs on the precomputed ``(n, n)`` cosine distances with
    ``min_cluster_size = n//2 + 1``, ``min_samples = 1`` and ``allow_single_cluster=True``:
    a cluster holding a majority can never split into two majorities, so without that flag
    HDBSCAN (which then never selects the root) would label every update noise.
    """
    n = cos_dist.shape[0]
    if n < 2:
        return None
    labels = (
        HDBSCAN(
            min_cluster_size=n // 2 + 1,
            min_samples=1,
            metric="precomputed",
            allow_single_cluster=True,
            copy=True,
        )
        .fit(cos_dist.numpy())
        .labels_
    )
    found = [int(label) for label in labels if label >= 0]
    if not found:
        return None
    best = max(sorted(set(found)), key=found.count)  # largest; ties to the lowest label
    return [i for i, label in enumerate(labels) if label == best]


@AGGREGATORS.register("flame")
class Flame(Aggregator):
    r"""FLAME (Nguyen et al., USENIX Security 2022).

    1. Filter: HDBSCAN on the pairwise cosine distances :math:`1 - \cos(\Delta_i, \Delta_j)`
       with ``min_cluster_size`` = ⌊n/2⌋+1 and ``min_samples`` = 1; the admitted set A is the
       majority cluster. If HDBSCAN finds no cluster at all (every update labelled noise), all
       updates are admitted — a choice the paper leaves open, logged as a warning and
       reported in ``info["clustered"]``.
    2. Clip and average:

       .. math::
           S = \operatorname{med}_i \|\Delta_i\|_2, \qquad
           \bar\Delta = \frac{1}{|A|} \sum_{i \in A}
                        \Delta_i \min\Big(1, \frac{S}{\|\Delta_i\|_2}\Big)
                        + \mathcal N\big(0, (\lambda S)^2 I_d\big)

       with S the median norm over *all* n updates (mean of the two middle values for even
       n) and λ the noise level. The noise comes from the rule's own generator, seeded once.

    Example counts are ignored. ``accepted`` lists the admitted clients; ``info`` logs λ, S
    and the noise std λS.

    Parameters
    ----------
    noise_lambda : float
        λ ≥ 0 (default 0.001, the paper's value for image classification).
    seed : int
        Seed of the noise generator, ≥ 0.

    Raises
    ------
    InvalidSettingError
        A setting is out of range.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = Flame(noise_lambda=0.0)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.accepted, [round(x, 4) for x in out.update.tolist()], round(out.info["clip_norm"], 4)
    ([0, 1], [2.0, 0.0, 2.0], 3.6056)

    References
    ----------
    Nguyen, Rieger, Chen, Yalame, Möllering, Fereidooni, Marchal, Miettinen, Mirhoseini,
    Zeitouni, Koushanfar, Sadeghi, Schneider. FLAME: Taming Backdoors in Federated Learning.
    USENIX Security 2022.
    """

    name = "flame"

    def __init__(self, noise_lambda: float = 0.001, seed: int = 0) -> None:
        self.noise_lambda = require_real(self.name, "noise_lambda", noise_lambda, low=0.0)
        self.seed = require_int(self.name, "seed", seed, minimum=0)
        self._generator = make_generator(self.name, seed)

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Keep the majority cosine cluster, clip it to the median norm, add noise."""
        n, d = updates.shape
        admitted = majority_cluster(cosine_distances(updates))
        clustered = admitted is not None
        if admitted is None:
            log.warning("flame: HDBSCAN found no cluster among %d updates; admitting all", n)
            admitted = list(range(n))
        norms = torch.linalg.vector_norm(updates, dim=1)
        clip = scalar_median(norms)
        rows = torch.tensor(admitted)
        update = subset_mean(updates, admitted, clip_factors(norms[rows], clip))
        std = self.noise_lambda * clip
        if std > 0:
            update = update + std * torch.randn(d, generator=self._generator, dtype=torch.float64)
        return Aggregate(
            update=update,
            accepted=[client_ids[i] for i in admitted],
            info={
                "noise_lambda": self.noise_lambda,
                "clip_norm": clip,
                "noise_std": std,
                "clustered": clustered,
            },
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the generator state."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state."""
        load_generator_state(self.name, self._generator, state)
