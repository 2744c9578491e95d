"""Adaptive robust clipping: clip the k largest updates to the norm of the (k+1)-th."""

from __future__ import annotations

import torch

from server.aggregators.common import clip_to_norm
from server.aggregators.pipeline import ByzantineStage, StageOutput
from server.aggregators.registry import PRE_STAGES

__all__ = ["AdaptiveRobustClipping", "arc_clip_count"]


def arc_clip_count(n: int, f: int) -> int:
    """Return k = ⌊2·(f/n)·(n − f)⌋, computed in integers as ⌊2f(n − f)/n⌋.

    Examples
    --------
    >>> arc_clip_count(3, 1), arc_clip_count(10, 2), arc_clip_count(10, 0)
    (1, 3, 0)
    """
    return (2 * f * (n - f)) // n


@PRE_STAGES.register("arc")
class AdaptiveRobustClipping(ByzantineStage):
    r"""Adaptive robust clipping, ARC (Allouah et al., 2024), a pre-aggregation stage.

    .. math::
        k = \Big\lfloor 2 \frac{f}{n} (n - f) \Big\rfloor, \qquad
        C = \|\Delta_{(k+1)}\|_2, \qquad
        y_i = \Delta_i \min\Big(1, \frac{C}{\|\Delta_i\|_2}\Big)

    where n is the number of updates, f the number of Byzantine updates tolerated and
    :math:`\Delta_{(k+1)}` the update with the (k+1)-th largest L2 norm: the k largest-norm
    updates are scaled down to norm C, the others pass unchanged (k = 0: nothing is
    clipped). Weights and client ids pass through.

    Parameters
    ----------
    f : int
        Byzantine updates tolerated, ≥ 0. Each round needs n > f.

    Raises
    ------
    InvalidSettingError
        ``f`` is not an integer ≥ 0, or a round has n ≤ f.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    >>> out = AdaptiveRobustClipping(f=1).transform(u, torch.ones(3), [0, 1, 2])
    >>> [[round(float(x), 3) for x in row] for row in out.updates]  # k = 1, C = √77
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [4.41, 5.04, 5.67]]

    References
    ----------
    Allouah, Guerraoui, Gupta, Pinot, Rizk. The Vital Role of Gradient Clipping in
    Byzantine-Resilient Distributed Learning. arXiv preprint, 2024.
    """

    name = "arc"

    def transform(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> StageOutput:
        """Clip the k largest-norm rows to the (k+1)-th largest norm."""
        n = self.out_rows(updates.shape[0])
        k = arc_clip_count(n, self.f)
        clipped = updates
        if k > 0:
            norms = torch.linalg.vector_norm(updates, dim=1)
            bound = float(torch.sort(norms, descending=True).values[k])
            # rows with norm > C are exactly (a subset of) the k largest; ties at C keep theirs
            clipped, _ = clip_to_norm(updates, bound)
        return StageOutput(
            updates=clipped,
            weights=weights,
            client_ids=list(client_ids),
            groups=[[i] for i in range(n)],
        )
