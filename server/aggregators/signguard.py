"""SignGuard: norm thresholds plus sign-statistics clustering, then clip to the median norm."""

from __future__ import annotations

import math
from typing import Any

import torch
from sklearn.cluster import MeanShift, estimate_bandwidth

from fedsim.errors import InvalidSettingError
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

__all__ = ["SignGuard", "sign_statistics"]

#: Smallest Mean-Shift bandwidth used when the estimate is 0 (many identical features).
MIN_BANDWIDTH = 1e-6


def sign_statistics(updates: torch.Tensor) -> torch.Tensor:
    """Return the ``(n, 3)`` fractions of positive, zero and negative entries of each row.

    Examples
    --------
    >>> sign_statistics(torch.tensor([[1.0, 0.0, -2.0, 3.0]])).tolist()
    [[0.5, 0.25, 0.25]]
    """
    return torch.stack(
        [
            (updates > 0).to(torch.float64).mean(dim=1),
            (updates == 0).to(torch.float64).mean(dim=1),
            (updates < 0).to(torch.float64).mean(dim=1),
        ],
        dim=1,
    )


def largest_cluster(features: torch.Tensor) -> list[int]:
    """Return the rows of the largest Mean-Shift cluster of ``features`` (ties: lowest label).

    The bandwidth is sklearn's ``estimate_bandwidth`` with quantile 0.5, floored at
    :data:`MIN_BANDWIDTH`; points farther than a bandwidth from every mode stay unclustered
    (``cluster_all=False``).
    """
    n = features.shape[0]
    if n == 1:
        return [0]
    x = features.numpy()
    bandwidth = max(float(estimate_bandwidth(x, quantile=0.5)), MIN_BANDWIDTH)
    labels = MeanShift(bandwidth=bandwidth, cluster_all=False).fit(x).labels_
    found = [int(label) for label in labels if label >= 0]
    if not found:
        return []
    best = max(sorted(set(found)), key=found.count)
    return [i for i, label in enumerate(labels) if label == best]


@AGGREGATORS.register("signguard")
class SignGuard(Aggregator):
    r"""SignGuard, plain variant (Xu, Huang, Song, Lan, ICDCS 2022).

    1. Norm filter: with :math:`M = \operatorname{med}_i \|\Delta_i\|_2` (all n updates),
       :math:`S_1 = \{i : L \le \|\Delta_i\|_2 / M \le R\}`.
    2. Sign clustering: draw a random subset of ⌈p·d⌉ coordinates (fresh each round from the
       rule's seeded generator), describe each update by the fractions of its positive, zero
       and negative entries there, cluster these 3-vectors with Mean-Shift (bandwidth from
       sklearn's ``estimate_bandwidth`` at quantile 0.5) and let :math:`S_2` be the largest
       cluster.
    3. Aggregate :math:`S = S_1 \cap S_2` clipped to the median norm:

       .. math::
           \bar\Delta = \frac{1}{|S|} \sum_{i \in S} \Delta_i \min\Big(1,
                        \frac{M}{\|\Delta_i\|_2}\Big)

    The plain variant uses the sign statistics only (no similarity features). If S is
    empty, or M = 0, the round's update is zero. Example counts are ignored. ``accepted``
    lists the clients in S.

    Parameters
    ----------
    lower : float
        L ≥ 0, lower norm ratio (default 0.1).
    upper : float
        R > L, upper norm ratio (default 3.0).
    coord_fraction : float
        p in (0, 1], fraction of coordinates for the sign statistics (default 0.1).
    seed : int
        Seed of the coordinate-sampling generator, ≥ 0.

    Raises
    ------
    InvalidSettingError
        A setting is out of range.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = SignGuard(coord_fraction=1.0)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.accepted, [round(x, 4) for x in out.update.tolist()]
    ([0, 1], [2.0, 0.0, 2.0])

    References
    ----------
    Xu, Huang, Song, Lan. Byzantine-robust Federated Learning through Collaborative Malicious
    Gradient Filtering. ICDCS 2022.
    """

    name = "signguard"

    def __init__(
        self,
        lower: float = 0.1,
        upper: float = 3.0,
        coord_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.lower = require_real(self.name, "lower", lower, low=0.0)
        self.upper = require_real(self.name, "upper", upper, low=0.0, low_open=True)
        if self.upper <= self.lower:
            raise InvalidSettingError(
                f"{self.name} needs lower < upper, got lower={lower!r}, upper={upper!r}"
            )
        self.coord_fraction = require_real(
            self.name, "coord_fraction", coord_fraction, low=0.0, high=1.0, low_open=True
        )
        self.seed = require_int(self.name, "seed", seed, minimum=0)
        self._generator = make_generator(self.name, seed)

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Intersect the norm filter with the largest sign cluster; clip; average."""
        n, d = updates.shape
        size = min(d, max(1, math.ceil(self.coord_fraction * d)))
        if size < d:
            coords = torch.sort(torch.randperm(d, generator=self._generator)[:size]).values
            sample = updates.index_select(1, coords)
        else:
            sample = updates
        cluster = set(largest_cluster(sign_statistics(sample)))
        norms = torch.linalg.vector_norm(updates, dim=1)
        median = scalar_median(norms)
        if median > 0:
            ratio = (norms / median).tolist()
            kept = [i for i in range(n) if i in cluster and self.lower <= ratio[i] <= self.upper]
        else:
            kept = []
        if kept:
            factors = clip_factors(norms[torch.tensor(kept)], median)
            update = subset_mean(updates, kept, factors)
        else:
            update = torch.zeros(d, dtype=torch.float64)
        return Aggregate(
            update=update,
            accepted=[client_ids[i] for i in kept],
            info={"median_norm": median, "cluster_size": len(cluster)},
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the generator state."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state."""
        load_generator_state(self.name, self._generator, state)
