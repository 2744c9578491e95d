"""DeepSight: reject clusters of updates whose output-layer energy is too concentrated."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import HDBSCAN

from fedsim.distances import cosine_distances
from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import (
    clip_factors,
    require_int,
    require_real,
    scalar_median,
    subset_mean,
)
from server.aggregators.registry import AGGREGATORS

__all__ = ["DeepSight", "neups", "suspicious_labels", "threshold_exceedings"]


def neups(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    r"""Return the NEUPs (normalised energy updates) of the output layer.

    .. math:: c_{i,p} = \varepsilon_{i,p}^2 / \sum_q \varepsilon_{i,q}^2

    where :math:`\varepsilon_{i,p} = \sum_j |\Delta W_{i,p,j}| + |\Delta b_{i,p}|` is the energy of
    output neuron p in update i (``weight``: ``(n, C, h)``, ``bias``: ``(n, C)``); an update
    with no output-layer energy gets all-zero NEUPs.

    Examples
    --------
    >>> w = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]]])
    >>> neups(w, torch.tensor([[0.0, 1.0, 1.0]])).mul(14).tolist()  # ε = (2, 1, 3)
    [[4.0, 1.0, 9.0]]
    """
    energy = weight.abs().sum(dim=2) + bias.abs()
    squared = energy * energy
    total = squared.sum(dim=1, keepdim=True)
    return torch.where(total > 0, squared / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)


def threshold_exceedings(neup: torch.Tensor) -> list[int]:
    r"""Return the threshold exceedings of each row of NEUPs.

    .. math:: TE_i = |\{p : c_{i,p} > \xi_i\}|, \qquad \xi_i = \max(0.01, 1/C) \max_p c_{i,p}

    with C the number of output neurons (strict exceeding).

    Examples
    --------
    >>> threshold_exceedings(torch.tensor([[4.0, 1.0, 9.0]]) / 14)  # ξ = 3/14
    [2]
    """
    xi = max(0.01, 1.0 / neup.shape[1]) * neup.max(dim=1, keepdim=True).values
    return (neup > xi).sum(dim=1).tolist()


def suspicious_labels(exceedings: list[int]) -> list[bool]:
    """Label update i suspicious iff TEᵢ ≤ median(TE)/2 (the paper's classification boundary).

    Examples
    --------
    >>> suspicious_labels([10, 10, 10, 1, 5])
    [False, False, False, True, True]
    """
    boundary = scalar_median(torch.tensor(exceedings, dtype=torch.float64)) / 2
    return [te <= boundary for te in exceedings]


def _hdbscan(data: np.ndarray, metric: str) -> np.ndarray:
    """HDBSCAN labels (−1: noise) with min_cluster_size 2, min_samples 1, one cluster allowed."""
    if data.shape[0] < 2:
        return np.zeros(data.shape[0], dtype=int)
    model = HDBSCAN(
        min_cluster_size=2, min_samples=1, metric=metric, allow_single_cluster=True, copy=True
    )
    return model.fit(data).labels_


def _co_cluster_distance(labels: np.ndarray) -> np.ndarray:
    """Return 0 for two updates in one cluster, else 1 (a noise point is its own cluster)."""
    dist = (labels[:, None] != labels[None, :]).astype(np.float64)
    noise = labels < 0
    dist[noise[:, None] & noise[None, :]] = 1.0
    np.fill_diagonal(dist, 0.0)
    return dist


@AGGREGATORS.register("deepsight")
class DeepSight(Aggregator):
    r"""DeepSight (Rieger, Nguyen, Miettinen, Sadeghi, NDSS 2022), from the updates alone.

    1. Label: NEUPs :math:`c_{i,p}` of the output layer (:func:`neups`), threshold
       exceedings :math:`TE_i` (:func:`threshold_exceedings`); update i is suspicious iff
       :math:`TE_i \le \operatorname{med}(TE)/2` (:func:`suspicious_labels`) — a backdoor
       concentrates its energy on few labels.
    2. Cluster: HDBSCAN (``min_cluster_size`` 2, ``min_samples`` 1) once on the cosine
       distances of the output-bias updates and once on the NEUP vectors (Euclidean); the
       pairwise co-clustering distances (0 same cluster, else 1; noise is its own cluster)
       are averaged and clustered again by HDBSCAN. A final cluster (a noise point alone) is
       accepted iff its share of suspicious updates is < τ.
    3. Clip and average: :math:`S = \operatorname{med}_i \|\Delta_i\|_2` over all n updates,
       :math:`\bar\Delta = \frac{1}{|A|} \sum_{i \in A} \Delta_i \min(1, S/\|\Delta_i\|_2)`
       over the accepted set A (unweighted; zero if A is empty).

    The paper's third feature, DDifs (output ratios of local and global model on random
    probe inputs), needs the models, which the rule does not see: it is left out, so the
    ensemble has two clusterings, not the paper's five (DDifs on three seeds). The output
    layer is read from the flat update, which fedsim builds as ``model.parameters()`` in
    order: every fedsim model ends with ``nn.Linear(h, C)``, so the update ends with its
    weight (C × h, row p = the weights into neuron p) and then its bias (C).
    HDBSCAN's sizes are not given in the paper (2 and 1 here). ``accepted`` lists A;
    ``info`` holds the TEs, the suspicious ids and S.

    Parameters
    ----------
    output_size : int
        C ≥ 2, the number of classes (output neurons).
    penultimate_size : int
        h ≥ 1, the output layer's input width.
    tau : float
        τ in (0, 1], the largest suspicious share a cluster may have, exclusive
        (default 1/3, the paper's).

    Raises
    ------
    InvalidSettingError
        A setting is out of range, or d < C·h + C.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    >>> DeepSight(output_size=2, penultimate_size=1)(u, torch.ones(3), [0, 1, 2])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: deepsight needs d >= C·h + C = 4 ... got d=3; ...
    >>> u = torch.cat([u, torch.zeros(3, 1, dtype=torch.float64)], dim=1)  # d = 4
    >>> out = DeepSight(output_size=2, penultimate_size=1)(u, torch.ones(3), [0, 1, 2])
    >>> out.info["exceedings"], out.accepted  # NEUPs (0.8, 0.2) each: TE 1, none suspicious
    ([1, 1, 1], [0, 1, 2])
    >>> [round(x, 4) for x in out.update.tolist()]  # row 2 clipped to S = √77
    [3.1367, 4.0133, 4.89, 0.0]

    References
    ----------
    Rieger, Nguyen, Miettinen, Sadeghi. DeepSight: Mitigating Backdoor Attacks in Federated
    Learning Through Deep Model Inspection. NDSS 2022.
    """

    name = "deepsight"

    def __init__(self, output_size: int, penultimate_size: int, tau: float = 1 / 3) -> None:
        self.output_size = require_int(self.name, "output_size", output_size, minimum=2)
        self.penultimate_size = require_int(
            self.name, "penultimate_size", penultimate_size, minimum=1
        )
        self.tau = require_real(self.name, "tau", tau, low=0.0, high=1.0, low_open=True)

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Label, cluster, vote, clip to the median norm, average the accepted updates."""
        n, d = updates.shape
        c, h = self.output_size, self.penultimate_size
        if d < c * h + c:
            raise InvalidSettingError(
                f"{self.name} needs d >= C·h + C = {c * h + c} (output layer {c}×{h} plus bias), "
                f"got d={d}; check output_size and penultimate_size"
            )
        bias = updates[:, d - c :]
        weight = updates[:, d - c - c * h : d - c].reshape(n, c, h)
        neup = neups(weight, bias)
        exceedings = threshold_exceedings(neup)
        suspicious = suspicious_labels(exceedings)
        merged = (
            _co_cluster_distance(_hdbscan(cosine_distances(bias).numpy(), "precomputed"))
            + _co_cluster_distance(_hdbscan(neup.numpy(), "euclidean"))
        ) / 2
        labels = _hdbscan(merged, "precomputed")
        accepted = []
        for i in range(n):
            members = [i] if labels[i] < 0 else [j for j in range(n) if labels[j] == labels[i]]
            if sum(suspicious[j] for j in members) / len(members) < self.tau:
                accepted.append(i)
        norms = torch.linalg.vector_norm(updates, dim=1)
        clip = scalar_median(norms)
        if accepted:
            rows = torch.tensor(accepted)
            update = subset_mean(updates, accepted, clip_factors(norms[rows], clip))
        else:
            update = torch.zeros(d, dtype=torch.float64)
        return Aggregate(
            update=update,
            accepted=[client_ids[i] for i in accepted],
            info={
                "exceedings": exceedings,
                "suspicious": [cid for cid, s in zip(client_ids, suspicious, strict=True) if s],
                "clip_norm": clip,
            },
        )
