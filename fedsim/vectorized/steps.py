r"""One local step of many clients at once, on stacked parameters, with :mod:`torch.func`.

Parameters are a dict ``name → (K, *shape)`` tensor: row k is client k's copy. Gradients come
from :func:`torch.func.vmap` over clients of :func:`torch.func.grad_and_value` of the model's
loss under :func:`torch.func.functional_call`, so the K forward and backward passes run as one
batched computation.

Plain SGD minimises each client's mean cross-entropy over the real examples of its batch,

.. math:: L_k = \frac{\sum_j w_{kj}\,\ell(f_{\theta_k}(x_{kj}), y_{kj})}{\sum_j w_{kj}},

with :math:`w_{kj} \in \{0, 1\}` masking the padding slots, i.e. exactly the mean a client
computes on its own (shorter) last batch.

DP-SGD (Abadi et al., CCS 2016, with Opacus' conventions) takes per-sample gradients
:math:`g_{kj} = \nabla_\theta \ell(f_{\theta_k}(x_{kj}), y_{kj})` by a second ``vmap``, over
the samples, clips each to norm C over all parameters and sums the real ones:

.. math:: \bar g_k = \sum_j w_{kj}\, g_{kj} \min\Big(1, \frac{C}{\|g_{kj}\|_2 + 10^{-6}}\Big),

the clip factor of Opacus' ``DPOptimizer.clip_and_accumulate``; the caller adds the noise and
divides by the expected batch size B.

Adversarial training (:func:`adversarial_grads`) replaces :math:`\ell` by the loss of
:meth:`fedsim.evasion.AdversarialTraining.loss` on the batch in pixel space, with the batch's
planned draws: the inner attack's input gradients are :func:`torch.func.grad` calls inside the
same ``vmap`` over clients, the adversarial examples are constants for the outer gradient, and
padding slots get weight 0 in every mean.

All of them feed :func:`sgd_step`, ``torch.optim.SGD``'s update (weight decay λ, momentum μ, no
dampening or Nesterov): :math:`g \leftarrow g + \lambda\theta`; :math:`b \leftarrow g` at the
first step, else :math:`b \leftarrow \mu b + g`, and :math:`g \leftarrow b` when μ > 0;
:math:`\theta \leftarrow \theta - \eta g`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fedsim.evasion import AdversarialDraw
from fedsim.training import AdversarialSettings, TrainSettings

__all__ = [
    "Params",
    "adversarial_clipped_grad_sum",
    "adversarial_grads",
    "clipped_grad_sum",
    "flatten_params",
    "masked_mean_grads",
    "sgd_step",
    "stack_params",
]

Params = dict[str, torch.Tensor]
"""Stacked parameters (or gradients): name → ``(K, *shape)``."""

CLIP_EPS = 1e-6
"""Added to each per-sample norm before dividing, as Opacus does."""


def stack_params(model: nn.Module, weights: torch.Tensor) -> Params:
    """Split flat weights ``(K, d)`` into ``model``'s parameters, each ``(K, *shape)``.

    The flat layout is :func:`fedsim.params.flat_params`' (``model.parameters()`` order).
    """
    out: Params = {}
    offset = 0
    for name, p in model.named_parameters():
        n = p.numel()
        out[name] = weights[:, offset : offset + n].reshape(len(weights), *p.shape).clone()
        offset += n
    if offset != weights.shape[1]:
        raise ValueError(f"weights have {weights.shape[1]} values, the model has {offset}")
    return out


def flatten_params(params: Params) -> torch.Tensor:
    """The inverse of :func:`stack_params`: ``(K, d)``."""
    return torch.cat([p.reshape(p.shape[0], -1) for p in params.values()], dim=1)


def masked_mean_grads(model: nn.Module) -> Callable[..., tuple[Params, torch.Tensor]]:
    """``f(params, x, y, w) -> (grads, losses)``: every client's masked mean loss and gradient.

    ``params`` ``(a, ...)``, ``x`` ``(a, W, *sample)``, ``y`` and ``w`` ``(a, W)``; ``losses``
    is ``(a,)``. Each client needs at least one real example (``w`` not all 0).
    """

    def loss(params: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(functional_call(model, params, (x,)), y, reduction="none")
        return (ce * w).sum() / w.sum()

    return vmap(grad_and_value(loss))


def adversarial_grads(
    model: nn.Module, adversarial: AdversarialSettings
) -> Callable[..., tuple[Params, torch.Tensor]]:
    r"""``f(params, x, y, w, start, replace) -> (grads, losses)``: adversarial training's step.

    ``x`` ``(a, W, *sample)`` are the batch's inputs as stored (normalised or not), mapped to
    pixel space here; ``start`` ``(a, W, *sample)`` and ``replace`` ``(a, W)`` the planned
    draws (:meth:`~fedsim.vectorized.plan.ChunkPlan.adversarial_batch`). The model sees
    :math:`(x_{pix} - \mu)/\sigma`, as :func:`~fedsim.evasion.model_in_pixel_space` computes it.
    """
    training, pixel_forward = adversarial.training, _pixel_forward(model, adversarial)

    def loss(
        params: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor,
        start: torch.Tensor,
        replace: torch.Tensor,
    ) -> torch.Tensor:
        draw = AdversarialDraw(start, replace)
        forward = pixel_forward(params)
        return training.loss(forward, adversarial.pixels(x), y, draw, weight=w)

    return vmap(grad_and_value(loss))


def _pixel_forward(
    model: nn.Module, adversarial: AdversarialSettings
) -> Callable[[Params], Callable[[torch.Tensor], torch.Tensor]]:
    """``params ↦ (z ↦ f_params((z − μ)/σ))``, as :class:`~fedsim.evasion.PixelSpaceModel`."""
    device = next(model.parameters()).device
    shape = (1, -1, 1, 1)
    mean = std = None
    if adversarial.mean is not None and adversarial.std is not None:
        mean = torch.tensor(adversarial.mean, dtype=torch.float32, device=device).view(shape)
        std = torch.tensor(adversarial.std, dtype=torch.float32, device=device).view(shape)

    def bind(params: Params) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(z: torch.Tensor) -> torch.Tensor:
            if mean is not None and std is not None:
                z = (z - mean) / std
            return functional_call(model, params, (z,))

        return forward

    return bind


def adversarial_clipped_grad_sum(
    model: nn.Module,
    adversarial: AdversarialSettings,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    start: torch.Tensor,
    replace: torch.Tensor,
    max_grad_norm: float,
) -> tuple[Params, torch.Tensor]:
    """:func:`clipped_grad_sum` of the adversarial-training loss, sample by sample.

    Each sample's loss is the adversarial-training loss of a batch of that one sample (its
    example crafted alone: the attacks treat samples independently), so its gradient is the
    per-sample gradient Opacus takes of the batch's mean loss in
    :func:`fedsim.privacy.train_dp_sgd`.
    """
    training, pixel_forward = adversarial.training, _pixel_forward(model, adversarial)

    def sample_loss(
        params: Params,
        x1: torch.Tensor,
        y1: torch.Tensor,
        start1: torch.Tensor,
        replace1: torch.Tensor,
    ) -> torch.Tensor:
        draw = AdversarialDraw(start1.unsqueeze(0), replace1.unsqueeze(0))
        pixels = adversarial.pixels(x1.unsqueeze(0))
        return training.loss(pixel_forward(params), pixels, y1.unsqueeze(0), draw)

    per_sample = vmap(grad_and_value(sample_loss), in_dims=(None, 0, 0, 0, 0))
    grads, losses = vmap(per_sample)(params, x, y, start, replace)
    return _clip_and_sum(grads, w, max_grad_norm), losses


def clipped_grad_sum(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    max_grad_norm: float,
) -> tuple[Params, torch.Tensor]:
    r"""Every client's sum of clipped per-sample gradients, and the per-sample losses.

    Parameters
    ----------
    model : nn.Module
        Supplies the architecture (its own parameter values are not used).
    params : Params
        ``(a, *shape)`` per parameter.
    x, y, w : torch.Tensor
        ``(a, W, *sample)`` inputs, ``(a, W)`` labels and 0/1 weights (0: padding).
    max_grad_norm : float
        C.

    Returns
    -------
    tuple of Params and torch.Tensor
        :math:`\bar g_k` ``(a, *shape)`` per parameter (see the module docstring), and the
        per-sample losses ``(a, W)``.
    """

    def sample_loss(params: Params, x1: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, params, (x1.unsqueeze(0),))
        return F.cross_entropy(logits, y1.unsqueeze(0))

    per_sample = vmap(grad_and_value(sample_loss), in_dims=(None, 0, 0))
    grads, losses = vmap(per_sample)(params, x, y)
    return _clip_and_sum(grads, w, max_grad_norm), losses


def _clip_and_sum(grads: Params, w: torch.Tensor, max_grad_norm: float) -> Params:
    """Σ_j w_kj · g_kj · min(1, C/(‖g_kj‖ + 1e-6)) over each client's samples."""
    a, width = w.shape
    norms = torch.stack([g.reshape(a, width, -1).norm(2, dim=-1) for g in grads.values()], -1)
    factor = (max_grad_norm / (norms.norm(2, dim=-1) + CLIP_EPS)).clamp(max=1.0) * w
    return {name: torch.einsum("kb,kb...->k...", factor, g) for name, g in grads.items()}


def sgd_step(
    params: Params,
    grads: Params,
    momenta: Params | None,
    active: int,
    settings: TrainSettings,
    first: bool,
) -> None:
    """Apply one SGD step to the first ``active`` clients, in place.

    ``grads`` are ``(active, ...)``; ``momenta`` (the momentum buffers, ``(K, ...)``) is
    needed when ``settings.momentum > 0``. ``first`` marks the clients' first step (the
    buffer starts as the gradient). See the module docstring for the update.
    """
    for name, p in params.items():
        theta, g = p[:active], grads[name]
        if settings.weight_decay != 0:
            g = g.add(theta, alpha=settings.weight_decay)
        if settings.momentum != 0:
            if momenta is None:
                raise ValueError("momentum > 0 needs momentum buffers")
            buf = momenta[name][:active]
            if first:
                buf.copy_(g)
            else:
                buf.mul_(settings.momentum).add_(g)
            g = buf
        theta.add_(g, alpha=-settings.lr)
