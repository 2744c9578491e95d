"""Norm bounding: clip each update's L2 norm, optionally add Gaussian noise ("weak DP")."""

from __future__ import annotations

from typing import Any

import torch

from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import (
    clip_factors,
    clip_to_norm,
    load_generator_state,
    make_generator,
    require_int,
    require_real,
)
from server.aggregators.pipeline import PreStage, StageOutput
from server.aggregators.registry import AGGREGATORS, PRE_STAGES

__all__ = ["NormBound", "NormClip"]


@AGGREGATORS.register("norm_bound")
class NormBound(Aggregator):
    r"""Norm bounding with optional weak DP (Sun et al., 2019).

    .. math::
        \bar\Delta = \frac{\sum_i w_i \Delta_i \min(1, M/\|\Delta_i\|_2)}{\sum_i w_i}
                     + \mathcal N(0, \sigma^2 I_d)

    where M is the norm bound, :math:`w_i` client i's example count (the plain mean if all are
    zero) and σ the per-coordinate noise std (0: no noise, nothing drawn). Noise comes from the
    rule's own generator, seeded once, so successive rounds draw successive noise. ``info``
    reports how many updates were clipped. The rule does not select clients.

    Parameters
    ----------
    max_norm : float
        M > 0.
    sigma : float
        σ ≥ 0 (default 0.0).
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
    >>> out = NormBound(max_norm=3.0)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> [round(x, 4) for x in out.update.tolist()], out.info["clipped"]
    ([2.0907, 0.73, 1.4027], 2)

    References
    ----------
    Sun, Kairouz, Suresh, McMahan. Can You Really Backdoor Federated Learning?
    arXiv:1911.07963, 2019.
    """

    name = "norm_bound"

    def __init__(self, max_norm: float, sigma: float = 0.0, seed: int = 0) -> None:
        self.max_norm = require_real(self.name, "max_norm", max_norm, low=0.0, low_open=True)
        self.sigma = require_real(self.name, "sigma", sigma, low=0.0)
        self.seed = require_int(self.name, "seed", seed, minimum=0)
        self._generator = make_generator(self.name, seed)

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Clip, take the weighted mean, add noise."""
        n = updates.shape[0]
        norms = torch.linalg.vector_norm(updates, dim=1)
        share = weights / weights.sum() if weights.sum() > 0 else torch.full_like(weights, 1 / n)
        # Σ wᵢ·min(1, M/‖Δᵢ‖)·Δᵢ / Σ wᵢ as one matrix-vector product (no clipped copy)
        update = (share * clip_factors(norms, self.max_norm)) @ updates
        if self.sigma > 0:
            noise = torch.randn(update.shape, generator=self._generator, dtype=torch.float64)
            update = update + self.sigma * noise
        return Aggregate(
            update=update,
            info={"clipped": int((norms > self.max_norm).sum()), "sigma": self.sigma},
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the generator state."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state."""
        load_generator_state(self.name, self._generator, state)


@PRE_STAGES.register("norm_bound")
class NormClip(PreStage):
    r"""Norm bounding as a pre-aggregation stage: :math:`\Delta_i \min(1, M/\|\Delta_i\|_2)`.

    Each row is scaled to L2 norm at most M; weights and ids pass through unchanged. Put it
    in front of any rule (``defense.pre: [{name: norm_bound, params: {max_norm: 5}}]``).

    Parameters
    ----------
    max_norm : float
        M > 0.

    Raises
    ------
    InvalidSettingError
        ``max_norm`` is not a finite number > 0.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = NormClip(max_norm=3.0).transform(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> [round(float(x), 4) for x in torch.linalg.vector_norm(out.updates, dim=1)]
    [2.2361, 3.0, 3.0]

    References
    ----------
    Sun, Kairouz, Suresh, McMahan. Can You Really Backdoor Federated Learning?
    arXiv:1911.07963, 2019.
    """

    name = "norm_bound"

    def __init__(self, max_norm: float) -> None:
        self.max_norm = require_real(self.name, "max_norm", max_norm, low=0.0, low_open=True)

    def transform(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> StageOutput:
        """Scale each row to norm ≤ M."""
        clipped, _ = clip_to_norm(updates, self.max_norm)
        return StageOutput(
            updates=clipped,
            weights=weights,
            client_ids=list(client_ids),
            groups=[[i] for i in range(updates.shape[0])],
        )
