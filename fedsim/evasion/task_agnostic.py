"""The task-agnostic attack: distort a relation-preserving embedding, with no task loss."""

from __future__ import annotations

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import (
    EvasionAttack,
    attack_mode,
    check_alpha,
    check_eps,
    check_norm,
    check_steps,
)
from fedsim.evasion.core import Objective, perturb, project, uniform_ball
from fedsim.evasion.registry import EVASION_ATTACKS
from fedsim.evasion.relation_embedding import RelationEmbedding
from fedsim.validation import require_int, require_real

__all__ = ["TaskAgnostic", "relation_distortion"]

_TINY = 1e-12


def _neighbour_similarities(z: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Row i: Student-t similarities of z_i to the anchors j ≠ i, normalised over j."""
    kernel = 1.0 / (1.0 + torch.cdist(z, anchors).pow(2))
    kernel = kernel * (1 - torch.eye(len(z), device=z.device, dtype=z.dtype))
    return kernel / kernel.sum(dim=1, keepdim=True).clamp_min(_TINY)


def relation_distortion(z_adv: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r"""How far adversarial embeddings moved from their clean relations (a sum over samples).

    .. math:: D = \sum_i \mathrm{KL}(q_i \Vert q'_i)
        + \frac{\lVert z'_i - z_i \rVert^2}{\bar d^2}

    with :math:`q_{ij} \propto (1 + \lVert z_i - z_j\rVert^2)^{-1}` the clean sample i's
    similarities to the batch's other clean embeddings (j ≠ i), :math:`q'_{ij}` the same with
    the adversarial :math:`z'_i` in place of :math:`z_i`, and :math:`\bar d^2` the batch's mean
    squared pairwise clean distance: the sample leaves its neighbours and its own place,
    relative to the batch's scale. 0 when :math:`z' = z`.

    Examples
    --------
    >>> z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> relation_distortion(z, z).item()
    0.0
    >>> bool(relation_distortion(z + torch.tensor([3.0, 3.0]), z) > 0)
    True
    """
    b = len(z)
    scale = torch.cdist(z, z).pow(2).sum() / max(b * (b - 1), 1)
    move = (z_adv - z).pow(2).sum(dim=1).sum() / scale.clamp_min(_TINY)
    if b < 2:
        return move
    q, q_adv = _neighbour_similarities(z, z), _neighbour_similarities(z_adv, z)
    off = ~torch.eye(b, dtype=torch.bool, device=z.device)
    kl = q[off] * (q[off].clamp_min(_TINY).log() - q_adv[off].clamp_min(_TINY).log())
    return kl.sum() + move


@EVASION_ATTACKS.register("task_agnostic")
class TaskAgnostic(EvasionAttack):
    r"""PGD on a relation-preserving embedding: no label, no task loss, no classifier.

    The attacker trains an encoder :math:`e` on unlabelled images it holds, keeping their
    neighbourhood relations (:class:`~fedsim.evasion.relation_embedding.RelationEmbedding`,
    parametric t-SNE), then, from a uniform random start in the ε-ball, ascends

    .. math:: x^{t+1} = \Pi_{B_\varepsilon(x) \cap [0,1]^d}\bigl(x^t + \alpha\,
        s(\nabla_x D(e(x^t), e(x)))\bigr)

    with D from :func:`relation_distortion` over the attacked batch (so an example depends on
    its batch) and Π, s as in PGD. Neither the target model nor the labels are read, so one
    perturbation serves every task that reads the input, including tasks the attacker never
    saw. This is the thesis' multi-task attack from a relation-preserving embedding; the
    embedding is van der Maaten's parametric t-SNE (AISTATS 2009) with a k-NN bandwidth.

    Parameters
    ----------
    eps : float
        Radius ε ≥ 0.
    steps : int
        PGD iterations T ≥ 1.
    alpha : float or None
        Step size α > 0; default 2.5 ε/T.
    norm : {"linf", "l2"}
        The ball's norm.
    dim : int
        Embedding dimension m.
    epochs, lr, batch_size : int, float, int
        The embedding's training (Adam).
    neighbours : int
        k of the input affinities' bandwidth.

    Raises
    ------
    InvalidSettingError
        On an invalid setting; when called before :meth:`fit`.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(24, 1, 8, 8)
    >>> attack = TaskAgnostic(eps=0.1, steps=5, epochs=2)
    >>> attack.fit(x, torch.Generator().manual_seed(0))
    >>> x_adv = attack(nn.Flatten(), x, torch.zeros(24), torch.Generator().manual_seed(1))
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6), bool((x_adv != x).any())
    (True, True)
    """

    name = "task_agnostic"

    def __init__(
        self,
        eps: float,
        steps: int = 20,
        alpha: float | None = None,
        norm: str = "linf",
        dim: int = 16,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 128,
        neighbours: int = 10,
    ) -> None:
        self.eps = check_eps(self.name, eps)
        self.steps = check_steps(self.name, steps)
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else check_alpha(self.name, alpha)
        self.norm = check_norm(self.name, norm)
        self.dim = require_int(self.name, "dim", dim, minimum=1)
        self.epochs = require_int(self.name, "epochs", epochs, minimum=1)
        self.lr = require_real(self.name, "lr", lr, low=0.0, low_open=True)
        self.batch_size = require_int(self.name, "batch_size", batch_size, minimum=3)
        self.neighbours = require_int(self.name, "neighbours", neighbours, minimum=1)
        self._encoder: RelationEmbedding | None = None

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has trained the embedding."""
        return self._encoder is not None

    def fit(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Train the embedding on images ``x`` (pixels; the attacker has no labels).

        Initial weights and batch order come from ``generator``.
        """
        if x.dim() != 4:
            raise InvalidSettingError(
                f"{self.label} trains on images (B, C, H, W), got shape {tuple(x.shape)}"
            )
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = RelationEmbedding(x.shape[1], self.dim).to(x.device)
        encoder.fit(
            x,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            neighbours=self.neighbours,
            generator=generator,
        )
        self._encoder = encoder.requires_grad_(False)

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """PGD on the embedding's distortion; ``model`` and ``y`` are never read."""
        encoder = self._encoder
        if encoder is None:
            raise InvalidSettingError(
                f"{self.label} has no embedding: call fit(x, generator) on the attacker's "
                "unlabelled images first (the robustness probe does)"
            )
        delta = uniform_ball(x.shape, self.eps, self.norm, generator).to(x.device, x.dtype)
        with attack_mode(encoder):
            with torch.no_grad():
                clean = encoder(x)
            objective: Objective = lambda z: relation_distortion(z, clean)  # noqa: E731
            return perturb(
                encoder,
                objective,
                x,
                project(x + delta, x, self.eps, self.norm),
                eps=self.eps,
                alpha=self.alpha,
                steps=self.steps,
                norm=self.norm,
            )
