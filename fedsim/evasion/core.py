"""Pure steps of gradient attacks: input gradients, ascent directions, projections, starts.

Everything here is a function of tensors and a ``forward`` callable (pixels → logits), with no
model state and no random draws (random starts take their noise as an argument), so the same
code runs eagerly and inside :func:`torch.func.vmap` (the vectorized runtime's adversarial
training: ``forward = lambda z: functional_call(model, params, (z,))``). Gradients are taken
with :func:`torch.func.grad`; adversarial examples leave :func:`perturb` detached, as the outer
loss treats them as constants (Danskin's theorem, Madry et al., ICLR 2018).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "Forward",
    "Objective",
    "ascent_direction",
    "cross_entropy_objective",
    "input_gradient",
    "perturb",
    "project",
    "uniform_ball",
]

Forward = Callable[[torch.Tensor], torch.Tensor]
"""Pixel-space inputs ``(B, C, H, W)`` in [0, 1] → logits ``(B, K)``."""

Objective = Callable[[torch.Tensor], torch.Tensor]
"""Logits of the perturbed batch → the scalar the attacker maximises (a sum over samples)."""

_TINY = 1e-12


def cross_entropy_objective(y: torch.Tensor) -> Objective:
    r"""The untargeted attacker's objective :math:`\sum_i \mathrm{CE}(f(x'_i), y_i)`.

    A sum, not a mean, so each sample's gradient does not depend on the batch size.

    Examples
    --------
    >>> obj = cross_entropy_objective(torch.tensor([0]))
    >>> round(obj(torch.tensor([[0.0, 0.0]])).item(), 4)  # log 2
    0.6931
    """
    return lambda logits: F.cross_entropy(logits, y, reduction="sum")


def input_gradient(forward: Forward, objective: Objective, x: torch.Tensor) -> torch.Tensor:
    r"""The gradient :math:`\nabla_x J(f(x))` of ``objective ∘ forward`` at ``x``.

    Computed with :func:`torch.func.grad`, so it composes with :func:`torch.func.vmap`.

    Examples
    --------
    >>> w = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    >>> g = input_gradient(lambda z: z @ w.T, lambda out: out[:, 0].sum(), torch.zeros(1, 2))
    >>> g.tolist()
    [[1.0, -1.0]]
    """
    return torch.func.grad(lambda z: objective(forward(z)))(x)


def _per_sample_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    """``‖v_i‖_p`` per sample, shaped to broadcast against ``v``."""
    flat = v.reshape(v.shape[0], -1)
    norm = torch.linalg.vector_norm(flat, ord=p, dim=1)
    return norm.view(-1, *([1] * (v.dim() - 1)))


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    r"""The steepest-ascent direction of unit norm for the ℓ∞ or ℓ2 ball.

    ℓ∞: :math:`\operatorname{sign}(g)`; ℓ2: :math:`g / \lVert g \rVert_2` per sample (0 where
    :math:`g = 0`).

    Examples
    --------
    >>> ascent_direction(torch.tensor([[3.0, -4.0]]), "linf").tolist()
    [[1.0, -1.0]]
    >>> ascent_direction(torch.tensor([[3.0, -4.0]]), "l2").tolist()
    [[0.6000000238418579, -0.800000011920929]]
    """
    if norm == "linf":
        return grad.sign()
    return grad / _per_sample_norm(grad, 2.0).clamp_min(_TINY)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    r"""Clip to [0, 1], then project the perturbation onto the ε-ball around ``x``.

    .. math:: x' \leftarrow x + \Pi_{\lVert\delta\rVert \le \varepsilon}
        (\operatorname{clip}_{[0,1]}(x') - x)

    ℓ∞: :math:`\Pi(\delta) = \operatorname{clip}(\delta, -\varepsilon, \varepsilon)`, and the
    result is the exact projection onto ball ∩ [0, 1]. ℓ2: :math:`\Pi(\delta) = \delta
    \min(1, \varepsilon/\lVert\delta\rVert_2)`, a rescaling towards ``x`` that stays in [0, 1]
    (``x`` and the clipped point both are); it is the order and rule of ART's
    ``ProjectedGradientDescent`` (clip, then rescale) and of Madry et al.'s code.

    Examples
    --------
    >>> x = torch.tensor([[0.5, 0.95]])
    >>> project(torch.tensor([[0.9, 1.2]]), x, 0.1, "linf").tolist()
    [[0.6000000238418579, 1.0]]
    >>> project(torch.tensor([[0.5, 0.0]]), torch.tensor([[0.5, 0.5]]), 0.1, "l2").tolist()
    [[0.5, 0.4000000059604645]]
    """
    delta = x_adv.clamp(0.0, 1.0) - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _per_sample_norm(delta, 2.0)
        delta = delta * torch.where(n > eps, eps / n.clamp_min(_TINY), torch.ones_like(n))
    return x + delta


def uniform_ball(
    shape: torch.Size | tuple[int, ...], eps: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    r"""Perturbations drawn uniformly from the ε-ball, one per sample (on the generator's device).

    ℓ∞: :math:`\delta \sim U[-\varepsilon, \varepsilon]^d`. ℓ2: :math:`\delta = \varepsilon
    u^{1/d} z/\lVert z\rVert_2` with :math:`z \sim N(0, I_d)`, :math:`u \sim U[0, 1]`, uniform in
    the ball's volume.

    Examples
    --------
    >>> d = uniform_ball((1000, 1, 2, 2), 0.3, "l2", torch.Generator().manual_seed(0))
    >>> bool(d.flatten(1).norm(dim=1).max() <= 0.3 + 1e-6)
    True
    """
    device = generator.device
    if norm == "linf":
        return (2 * torch.rand(shape, generator=generator, device=device) - 1) * eps
    z = torch.randn(shape, generator=generator, device=device)
    d = z[0].numel() if len(shape) > 0 and shape[0] > 0 else 1
    u = torch.rand((shape[0],) + (1,) * (len(shape) - 1), generator=generator, device=device)
    return eps * u ** (1.0 / d) * z / _per_sample_norm(z, 2.0).clamp_min(_TINY)


def perturb(
    forward: Forward,
    objective: Objective,
    x: torch.Tensor,
    start: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
    decay: float | None = None,
) -> torch.Tensor:
    r"""Projected gradient ascent on ``objective`` from ``start`` (detached result).

    PGD (Madry et al., ICLR 2018), with :math:`\Pi` from :func:`project`:

    .. math:: x^{t+1} = \Pi\bigl(x^t + \alpha\, s(\nabla_x J(f(x^t)))\bigr)

    with :math:`s` from :func:`ascent_direction`. With ``decay`` = μ it is MI-FGSM (Dong et
    al., CVPR 2018): :math:`g^{t+1} = \mu g^t + \nabla_x J / \lVert\nabla_x J\rVert_1` (per
    sample) and the step follows :math:`s(g^{t+1})`.

    ``start`` is used as given (the caller draws it: ``x`` for no random start, ``x + δ`` with
    :func:`uniform_ball` for PGD's, ``x + 0.001·N(0, 1)`` for TRADES); it is not projected
    before the first step, as in ART and in TRADES' code.

    Examples
    --------
    >>> w = torch.tensor([[1.0, -1.0]])
    >>> x = torch.tensor([[0.5, 0.5]])
    >>> out = perturb(lambda z: z @ w.T, lambda o: o.sum(), x, x, eps=0.1, alpha=0.05,
    ...               steps=3, norm="linf")
    >>> [round(v, 6) for v in out[0].tolist()]
    [0.6, 0.4]
    """
    x = x.detach()
    x_adv = start.detach()
    momentum = torch.zeros_like(x) if decay is not None else None
    for _ in range(steps):
        grad = input_gradient(forward, objective, x_adv)
        if momentum is not None:
            momentum = decay * momentum + grad / _per_sample_norm(grad, 1.0).clamp_min(_TINY)
            grad = momentum
        x_adv = project(x_adv + alpha * ascent_direction(grad, norm), x, eps, norm).detach()
    return x_adv
