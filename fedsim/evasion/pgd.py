"""PGD: projected gradient descent with random restarts (Madry et al., ICLR 2018)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fedsim.evasion.base import EvasionAttack, check_alpha, check_eps, check_norm, check_steps
from fedsim.evasion.core import cross_entropy_objective, perturb, project, uniform_ball
from fedsim.evasion.registry import EVASION_ATTACKS
from fedsim.validation import require_int

__all__ = ["PGD", "keep_first_success"]


def keep_first_success(
    best: torch.Tensor, done: torch.Tensor, candidate: torch.Tensor, fooled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge one restart: samples not yet fooled take ``candidate``; ``done`` marks successes.

    A sample keeps the first restart that fooled the model; one never fooled ends with the
    last restart's example.

    Examples
    --------
    >>> best, done = torch.tensor([[1.0], [2.0]]), torch.tensor([True, False])
    >>> new, done = keep_first_success(best, done, torch.tensor([[9.0], [9.0]]),
    ...                                torch.tensor([True, False]))
    >>> new.tolist(), done.tolist()
    ([[1.0], [9.0]], [True, False])
    """
    take = (~done).view(-1, *([1] * (best.dim() - 1)))
    return torch.where(take, candidate, best), done | fooled


@EVASION_ATTACKS.register("pgd")
class PGD(EvasionAttack):
    r"""Projected gradient descent on the cross-entropy (Madry et al., ICLR 2018).

    From a uniform random point of the ε-ball (:func:`~fedsim.evasion.core.uniform_ball`,
    clipped to [0, 1]),

    .. math:: x^{t+1} = \Pi_{B_\varepsilon(x) \cap [0,1]^d}\bigl(x^t + \alpha\, s(\nabla_x
        \mathrm{CE}(f(x^t), y))\bigr), \quad t = 0, \dots, T-1,

    with :math:`s(g) = \operatorname{sign}(g)` for ℓ∞ and :math:`g/\lVert g\rVert_2` for ℓ2 and
    Π from :func:`~fedsim.evasion.core.project`. With R restarts a sample keeps the first
    restart's :math:`x^T` that the model misclassifies, else the last one.

    Parameters
    ----------
    eps : float
        Radius ε ≥ 0 of the ball.
    steps : int
        Iterations T ≥ 1.
    alpha : float or None
        Step size α > 0; default :math:`2.5\,\varepsilon/T` (Madry et al.'s step-to-radius
        ratio; 0 when ε = 0, which leaves ``x`` unchanged).
    norm : {"linf", "l2"}
        The ball's norm.
    restarts : int
        Random restarts R ≥ 1.
    random_start : bool
        Start at ``x`` itself when false (then restarts are identical: use ``restarts=1``).

    Raises
    ------
    InvalidSettingError
        On a negative or infinite ``eps``, ``steps < 1``, ``alpha <= 0``, an unknown ``norm``
        or ``restarts < 1``.

    Examples
    --------
    >>> lin = nn.Linear(2, 2, bias=False)
    >>> _ = lin.weight.data.copy_(torch.eye(2))
    >>> x, y = torch.tensor([[0.6, 0.4]]), torch.tensor([0])
    >>> attack = PGD(eps=0.2, steps=10, norm="linf")
    >>> attack.label
    'pgd-linf-0.2'
    >>> [round(v, 4) for v in attack(lin, x, y, torch.Generator().manual_seed(0))[0].tolist()]
    [0.4, 0.6]
    """

    name = "pgd"

    def __init__(
        self,
        eps: float,
        steps: int = 10,
        alpha: float | None = None,
        norm: str = "linf",
        restarts: int = 1,
        random_start: bool = True,
    ) -> None:
        self.eps = check_eps(self.name, eps)
        self.steps = check_steps(self.name, steps)
        if alpha is None:
            self.alpha = 2.5 * self.eps / self.steps
        else:
            self.alpha = check_alpha(self.name, alpha)
        self.norm = check_norm(self.name, norm)
        self.restarts = require_int(self.name, "restarts", restarts, minimum=1)
        self.random_start = bool(random_start)

    def start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The first iterate: ``x``, or ``clip(x + δ, 0, 1)`` with δ uniform in the ball."""
        if not self.random_start:
            return x
        delta = uniform_ball(x.shape, self.eps, self.norm, generator).to(x.device, x.dtype)
        return project(x + delta, x, self.eps, self.norm)

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Run the restarts, keeping each sample's first success."""
        return self.restarts_of(model, cross_entropy_objective(y), model, x, y, generator)

    def restart(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        objective: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """One PGD run on ``objective(forward(·))`` from a fresh start in the ε-ball."""
        return perturb(
            forward,
            objective,
            x,
            self.start(x, generator),
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            norm=self.norm,
        )

    def restarts_of(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        objective: Callable[[torch.Tensor], torch.Tensor],
        judge: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        best: torch.Tensor | None = None,
        done: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """PGD's restarts on ``objective(forward(·))``, each sample kept at its first success.

        A sample succeeds when ``judge``'s logits misclassify it (``judge`` is ``forward`` for
        plain PGD; a purified attack judges on one fresh draw of the purifier). ``best`` and
        ``done`` (default ``x`` and none fooled) carry earlier candidates in: a sample already
        ``done`` keeps its ``best``, and no restart runs once every sample is done.
        """
        if best is None:
            best = x
        if done is None:
            done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            if bool(done.all()):
                break
            x_adv = self.restart(forward, objective, x, generator)
            with torch.no_grad():
                fooled = judge(x_adv).argmax(dim=1) != y
            best, done = keep_first_success(best, done, x_adv, fooled)
        return best
