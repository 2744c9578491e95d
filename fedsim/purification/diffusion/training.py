r"""Denoising score matching (Vincent, 2011) on the VP-SDE, in its noise-prediction form.

For :math:`x_0` from the data, :math:`t \sim U(t_{\min}, 1)` and
:math:`\varepsilon \sim N(0, I)`, with :math:`x_t` the closed-form marginal
(:meth:`~fedsim.purification.diffusion.sde.VPSDE.marginal`),

.. math:: \mathcal L(\theta) = \mathbb E\,\bigl\lVert \varepsilon_\theta(x_t, t) - \varepsilon
    \bigr\rVert_2^2 \,/\, d,

which is Song et al.'s (ICLR 2021, Eq. 7) weighted DSM objective with
:math:`\lambda(t) = 1 - \bar\alpha(t)` and the score parameterised as
:math:`s_\theta = -\varepsilon_\theta / \sqrt{1-\bar\alpha}` (Ho et al., NeurIPS 2020, the
"simple" loss). Every draw comes from the caller's generator.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.purification.diffusion.sde import VPSDE
from fedsim.validation import require_int, require_real

__all__ = ["T_MIN", "dsm_loss", "dsm_step", "train_score_net"]

T_MIN = 1e-3
"""The smallest time trained on and sampled to (Song et al.'s ε = 10⁻³)."""


def dsm_loss(
    net: nn.Module, sde: VPSDE, x0: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    r"""The mean squared noise-prediction error on one batch ``x0`` (data scale [−1, 1]).

    Examples
    --------
    >>> zero = lambda x, t: torch.zeros_like(x)  # predicts no noise: the loss is E[ε²] ≈ 1
    >>> g = torch.Generator().manual_seed(0)
    >>> round(float(dsm_loss(zero, VPSDE(), torch.zeros(4096, 1, 2, 2), g)), 1)
    1.0
    """
    n = x0.shape[0]
    t = T_MIN + (1.0 - T_MIN) * torch.rand(n, generator=generator, device=generator.device)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device)
    t, noise = t.to(x0.device, x0.dtype), noise.to(x0.device, x0.dtype)
    xt, _ = sde.marginal(x0, t, noise)
    return ((net(xt, t) - noise) ** 2).mean()


def dsm_step(
    net: nn.Module,
    sde: VPSDE,
    x0: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One optimiser and ``schedule`` step on :func:`dsm_loss`; the step's loss.

    The minibatch is ``batch_size`` images of ``x0`` drawn with replacement from ``generator``
    (which also draws the step's times and noise); ``net`` stays in the mode it is in.
    """
    pick = torch.randint(x0.shape[0], (batch_size,), generator=generator)
    loss = dsm_loss(net, sde, x0[pick.to(x0.device)], generator)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()
    return float(loss.detach())


def train_score_net(
    net: nn.Module,
    sde: VPSDE,
    x0: torch.Tensor,
    generator: torch.Generator,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> list[float]:
    r"""Adam on :func:`dsm_loss` for ``steps`` minibatches of ``x0`` (data scale); the losses.

    Minibatches are drawn with replacement; the learning rate decays linearly to 0 (cosine-free,
    as in the small-scale DDPM recipes). ``net`` is left in eval mode.

    Raises
    ------
    InvalidSettingError
        Empty ``x0``, or a setting out of range.
    """
    steps = require_int("score training", "steps", steps, minimum=1)
    batch_size = require_int("score training", "batch_size", batch_size, minimum=1)
    lr = require_real("score training", "lr", lr, low=0.0, low_open=True)
    if x0.shape[0] == 0:
        raise InvalidSettingError("score training needs at least one example, got none")
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 - k / steps)
    net.train()
    losses = []
    for _ in range(steps):
        losses.append(dsm_step(net, sde, x0, optimizer, schedule, batch_size, generator))
    net.eval()
    return losses
