"""Bucketing: average random buckets of updates before a robust rule."""

from __future__ import annotations

import math
from typing import Any

import torch

from server.aggregators.common import load_generator_state, make_generator, require_int
from server.aggregators.pipeline import PreStage, StageOutput
from server.aggregators.registry import PRE_STAGES

__all__ = ["Bucketing"]


@PRE_STAGES.register("bucketing")
class Bucketing(PreStage):
    r"""Bucketing (Karimireddy, He, Jaggi, ICLR 2022), a pre-aggregation stage.

    Shuffle the n updates with a seeded permutation π, cut it into ⌈n/s⌉ consecutive buckets
    of size s (the last may be smaller) and pass the bucket means

    .. math:: \bar\Delta_b = \frac{1}{|B_b|} \sum_{i \in B_b} \Delta_{\pi(i)}

    to the rule, with weight :math:`\sum_{i \in B_b} w_{\pi(i)}` and id b (the bucket index).
    The mean inside a bucket is unweighted, as in the paper. Rules that keep per-client
    history (FoolsGold) see bucket indices instead of clients behind this stage. The
    generator is seeded once; each round draws a fresh permutation.

    Parameters
    ----------
    bucket_size : int
        s ≥ 1 (s = 1 only shuffles).
    seed : int
        Seed of the stage's generator, ≥ 0.

    Raises
    ------
    InvalidSettingError
        A setting is not an integer in range.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = Bucketing(bucket_size=2).transform(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.updates.shape[0], out.client_ids, sorted(len(g) for g in out.groups)
    (2, [0, 1], [1, 2])

    References
    ----------
    Karimireddy, He, Jaggi. Byzantine-Robust Learning on Heterogeneous Datasets via
    Bucketing. ICLR 2022.
    """

    name = "bucketing"

    def __init__(self, bucket_size: int, seed: int = 0) -> None:
        self.bucket_size = require_int(self.name, "bucket_size", bucket_size, minimum=1)
        self.seed = require_int(self.name, "seed", seed, minimum=0)
        self._generator = make_generator(self.name, seed)

    def out_rows(self, n: int) -> int:
        """Return ⌈n/s⌉."""
        return math.ceil(n / self.bucket_size)

    def transform(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> StageOutput:
        """Shuffle, then average consecutive buckets of size s."""
        n = updates.shape[0]
        perm = torch.randperm(n, generator=self._generator)
        groups = [perm[s : s + self.bucket_size].tolist() for s in range(0, n, self.bucket_size)]
        means = torch.stack([updates[g].mean(dim=0) for g in groups])
        sums = torch.stack([weights[g].sum() for g in groups])
        return StageOutput(
            updates=means, weights=sums, client_ids=list(range(len(groups))), groups=groups
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the generator state."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator state."""
        load_generator_state(self.name, self._generator, state)
