"""A relation-preserving embedding learned without labels (parametric t-SNE).

The task-agnostic attacker's only model of the data: an encoder trained so that samples close in
input space stay close in a low-dimensional space, with no label and no task loss.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.errors import InvalidSettingError

__all__ = [
    "RelationEmbedding",
    "embedding_affinities",
    "input_affinities",
    "relation_loss",
]

_TINY = 1e-12


def input_affinities(x: torch.Tensor, neighbours: int) -> torch.Tensor:
    r"""Symmetric input-space affinities of a batch (t-SNE's P with a k-NN bandwidth).

    .. math:: p_{j|i} = \frac{\exp(-\lVert x_i - x_j\rVert^2 / 2\sigma_i^2)}
        {\sum_{l \ne i} \exp(-\lVert x_i - x_l\rVert^2 / 2\sigma_i^2)}, \qquad
        P_{ij} = \frac{p_{j|i} + p_{i|j}}{2B}

    with :math:`\sigma_i` the distance from :math:`x_i` to its ``neighbours``-th nearest
    neighbour in the batch (instead of t-SNE's perplexity search) and :math:`P_{ii} = 0`.

    Examples
    --------
    >>> p = input_affinities(torch.tensor([[0.0], [0.1], [5.0]]), neighbours=1)
    >>> round(p.sum().item(), 6), bool(p[0, 1] > p[0, 2])
    (1.0, True)
    """
    b = x.shape[0]
    d2 = torch.cdist(x.flatten(1), x.flatten(1)).pow(2)
    eye = torch.eye(b, dtype=torch.bool, device=x.device)
    k = min(max(neighbours, 1), b - 1)
    sigma2 = d2.masked_fill(eye, float("inf")).kthvalue(k, dim=1).values.clamp_min(_TINY)
    logits = (-d2 / (2 * sigma2.unsqueeze(1))).masked_fill(eye, float("-inf"))
    cond = torch.softmax(logits, dim=1)
    return (cond + cond.T) / (2 * b)


def embedding_affinities(z: torch.Tensor) -> torch.Tensor:
    r"""t-SNE's heavy-tailed embedding affinities :math:`Q_{ij}` of a batch.

    .. math:: Q_{ij} = \frac{(1 + \lVert z_i - z_j\rVert^2)^{-1}}
        {\sum_{l \ne m} (1 + \lVert z_l - z_m\rVert^2)^{-1}}, \qquad Q_{ii} = 0

    Examples
    --------
    >>> q = embedding_affinities(torch.tensor([[0.0], [1.0]]))
    >>> q.tolist()
    [[0.0, 0.5], [0.5, 0.0]]
    """
    kernel = 1.0 / (1.0 + torch.cdist(z, z).pow(2))
    kernel = kernel * (1 - torch.eye(z.shape[0], device=z.device, dtype=z.dtype))
    return kernel / kernel.sum().clamp_min(_TINY)


def relation_loss(x: torch.Tensor, z: torch.Tensor, neighbours: int) -> torch.Tensor:
    r"""Parametric t-SNE's objective :math:`\mathrm{KL}(P \Vert Q)` of a batch.

    van der Maaten, "Learning a Parametric Embedding by Preserving Local Structure", AISTATS
    2009.

    .. math:: \mathrm{KL}(P \Vert Q) = \sum_{i \ne j} P_{ij} \log \frac{P_{ij}}{Q_{ij}}

    with P from :func:`input_affinities` and Q from :func:`embedding_affinities`.

    Examples
    --------
    >>> x = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    >>> kept = relation_loss(x, x * 10, neighbours=1)
    >>> swapped = relation_loss(x, x[[0, 2, 1, 3]] * 10, neighbours=1)
    >>> bool(kept < swapped)
    True
    """
    p, q = input_affinities(x, neighbours), embedding_affinities(z)
    mask = p > 0
    return (p[mask] * (p[mask].log() - q[mask].clamp_min(_TINY).log())).sum()


class RelationEmbedding(nn.Module):
    r"""Encoder :math:`e: [0,1]^{C \times H \times W} \to \mathbb{R}^m` trained by :meth:`fit`.

    Two 3×3 convolutions (ReLU, the second strided), a 4×4 adaptive average pool and a linear
    map to ``dim`` coordinates.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> e = RelationEmbedding(channels=1, dim=2)
    >>> x = torch.rand(16, 1, 8, 8)
    >>> before = relation_loss(x, e(x), 5).item()
    >>> e.fit(x, epochs=30, lr=1e-2, batch_size=16, neighbours=5,
    ...       generator=torch.Generator().manual_seed(0))
    >>> relation_loss(x, e(x), 5).item() < before
    True
    """

    def __init__(self, channels: int, dim: int = 16, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, dim)``."""
        return self.net(x)

    def fit(
        self,
        x: torch.Tensor,
        *,
        epochs: int,
        lr: float,
        batch_size: int,
        neighbours: int,
        generator: torch.Generator,
    ) -> None:
        """Minimise :func:`relation_loss` with Adam over shuffled batches of ``x`` (no labels).

        Batches of fewer than 3 images are skipped (no relation to keep).

        Raises
        ------
        InvalidSettingError
            With fewer than 3 images.
        """
        if len(x) < 3:
            raise InvalidSettingError(
                f"a relation-preserving embedding needs at least 3 images, got {len(x)}"
            )
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        self.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(x), generator=generator).split(batch_size):
                if len(batch) < 3:
                    continue
                xb = x[batch.to(x.device)]
                loss = relation_loss(xb, self(xb), neighbours)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.eval()
