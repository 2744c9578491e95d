"""Divide-and-Conquer (DnC): drop updates far along the top singular direction."""

from __future__ import annotations

import math
from typing import Any

import torch

from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import (
    load_generator_state,
    make_generator,
    require_int,
    require_real,
    subset_mean,
)
from server.aggregators.registry import AGGREGATORS

__all__ = ["DnC"]


@AGGREGATORS.register("dnc")
class DnC(Aggregator):
    r"""Divide-and-Conquer (Shejwalkar & Houmansadr, NDSS 2021).

    ``niters`` times: draw a random subset r of b coordinates (without replacement; all d
    if b ≥ d), centre the sub-vectors, score each by its squared projection on the top right
    singular vector, and keep the n − ⌊c·f⌋ lowest scores:

    .. math::
        \mu = \frac{1}{n}\sum_i \Delta_{i,r}, \qquad
        U\Sigma V^\top = [\Delta_{i,r} - \mu]_i, \qquad
        s_i = \langle \Delta_{i,r} - \mu, v_1 \rangle^2

    with :math:`v_1` the first column of V. The output is the plain mean of the updates kept
    in *every* iteration (the intersection); if the intersection is empty the round's update
    is zero (``accepted`` empty). ⌊c·f⌋ rounds the paper's c·f down to whole updates; ties in
    scores go to the lower row index. Example counts are ignored. ``accepted`` lists the kept
    clients in row order.

    Parameters
    ----------
    f : int
        Byzantine clients expected, ≥ 0.
    subsample_dim : int
        b ≥ 1, coordinates per iteration (default 10000).
    niters : int
        Iterations ≥ 1 (default 1).
    filter_frac : float
        c > 0, the filtering fraction (default 1.0: drop f per iteration).
    seed : int
        Seed of the coordinate-sampling generator, ≥ 0.

    Raises
    ------
    InvalidSettingError
        A setting out of range, or a round with n ≤ ⌊c·f⌋ (nothing would be kept).

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = DnC(f=1)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.update.tolist(), out.accepted
    ([2.0, 0.0, 2.0], [0, 1])

    References
    ----------
    Shejwalkar, Houmansadr. Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
    Defenses for Federated Learning. NDSS 2021.
    """

    name = "dnc"

    def __init__(
        self,
        f: int,
        subsample_dim: int = 10000,
        niters: int = 1,
        filter_frac: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.f = require_int(self.name, "f", f, minimum=0)
        self.subsample_dim = require_int(self.name, "subsample_dim", subsample_dim, minimum=1)
        self.niters = require_int(self.name, "niters", niters, minimum=1)
        self.filter_frac = require_real(
            self.name, "filter_frac", filter_frac, low=0.0, low_open=True
        )
        self.seed = require_int(self.name, "seed", seed, minimum=0)
        self._generator = make_generator(self.name, seed)

    @property
    def removed(self) -> int:
        """⌊c·f⌋, the updates dropped per iteration."""
        return math.floor(self.filter_frac * self.f)

    def check_round(self, n: int) -> None:
        """Raise unless n > ⌊c·f⌋."""
        super().check_round(n)
        if n <= self.removed:
            raise InvalidSettingError(
                f"{self.name} needs n > floor(filter_frac*f), got n={n}, f={self.f}, "
                f"filter_frac={self.filter_frac}"
            )

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Filter by the top singular direction ``niters`` times; average the survivors."""
        n, d = updates.shape
        keep = n - self.removed
        good = torch.ones(n, dtype=torch.bool)
        for _ in range(self.niters):
            if self.subsample_dim >= d:
                sub = updates
            else:
                coords = torch.randperm(d, generator=self._generator)[: self.subsample_dim]
                sub = updates.index_select(1, torch.sort(coords).values)
            centred = sub - sub.mean(dim=0)
            top = torch.linalg.svd(centred, full_matrices=False).Vh[0]
            scores = (centred @ top) ** 2
            kept = torch.sort(scores, stable=True).indices[:keep]
            mask = torch.zeros(n, dtype=torch.bool)
            mask[kept] = True
            good &= mask
        rows = torch.nonzero(good).flatten()
        if rows.numel() == 0:
            update = torch.zeros(d, dtype=torch.float64)
        else:
            update = subset_mean(updates, rows.tolist())
        return Aggregate(
            update=update,
            accepted=[client_ids[int(i)] for i in rows],
            info={"removed_per_iter": self.removed},
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the generator state."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state."""
        load_generator_state(self.name, self._generator, state)
