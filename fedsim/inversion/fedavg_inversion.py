r"""Reconstruction from a multi-step FedAvg update by simulating the client's local training.

Inverting Gradients reads a FedAvg update :math:`\Delta = w_T - w_0` as one gradient
:math:`-\Delta/(\eta T)` of the whole local dataset at :math:`w_0`. After several local steps
that reading is only an approximation; Dimitrov et al. instead unroll the client's local
procedure on the dummy data and match the simulated update to the observed one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fedsim.inversion.inverting_gradients import InvertingGradients
from fedsim.inversion.label_counts import label_counts
from fedsim.inversion.registry import INVERSION_ATTACKS
from fedsim.validation import require_int, require_real

__all__ = ["FedAvgInversion", "simulate_local_sgd"]


def simulate_local_sgd(
    model: nn.Module,
    x: torch.Tensor,
    soft_labels: torch.Tensor,
    orders: Sequence[torch.Tensor],
    *,
    batch_size: int,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    create_graph: bool = True,
) -> dict[str, torch.Tensor]:
    r"""The weights after local SGD on ``(x, soft_labels)``, differentiable in ``x``.

    One epoch per entry of ``orders`` (a permutation of the :math:`N` examples), cut into
    batches of :math:`B` (the last one shorter); each step is torch's SGD,

    .. math:: d_t = \nabla_w \tfrac{1}{|B_t|}\textstyle\sum_{i \in B_t} \ell(f_w(x_i), p_i)
        + \lambda w,\quad m_t = \mu m_{t-1} + d_t\ (m_0 = d_0),\quad w \leftarrow w - \eta m_t,

    with :math:`\eta` = ``lr``, :math:`\mu` = ``momentum`` and :math:`\lambda` =
    ``weight_decay``, run with :func:`torch.func.functional_call` from the model's weights
    (left unchanged). With ``create_graph`` the result can be differentiated in ``x``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> x, soft = torch.zeros(2, 2), torch.eye(2)
    >>> w = simulate_local_sgd(model, x, soft, [torch.arange(2)], batch_size=2, lr=0.1)
    >>> torch.allclose(w["weight"], model.weight)  # zero inputs: no weight gradient
    True
    """
    names = [name for name, _ in model.named_parameters()]
    weights = [p.detach().requires_grad_(True) for _, p in model.named_parameters()]
    velocity: list[torch.Tensor] | None = None
    for order in orders:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            logits = functional_call(model, dict(zip(names, weights, strict=True)), (x[batch],))
            loss = F.cross_entropy(logits, soft_labels[batch])
            grads = torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True)
            steps = [
                (torch.zeros_like(w) if g is None else g) + weight_decay * w
                for w, g in zip(weights, grads, strict=True)
            ]
            if momentum > 0:
                velocity = (
                    steps
                    if velocity is None
                    else [momentum * v + s for v, s in zip(velocity, steps, strict=True)]
                )
                steps = velocity
            weights = [w - lr * s for w, s in zip(weights, steps, strict=True)]
    return dict(zip(names, weights, strict=True))


@INVERSION_ATTACKS.register("fedavg_inversion")
class FedAvgInversion(InvertingGradients):
    r"""Inverting Gradients on the *simulated* FedAvg update instead of one gradient.

    Solves

    .. math:: x'^* = \arg\min_{x' \in [lo, hi]^N} \Big(1 - \cos\big(w_0 - w_T(x', y),\
        -\Delta\big)\Big) + \alpha\, \mathrm{TV}(x')

    where :math:`w_T(x', y)` are the weights after simulating the client's local training on
    the :math:`N` dummy inputs (:func:`simulate_local_sgd`: :math:`E` = ``local_epochs``
    epochs of SGD in batches of :math:`B` = ``local_batch_size`` at rate :math:`\eta` =
    ``local_lr``, with ``local_momentum`` and ``local_weight_decay``) from the global model
    :math:`w_0`, :math:`\Delta` the observed update (the attack receives it read as a gradient,
    :math:`-\Delta/(\eta T)`, the scale the cosine ignores), :math:`y` the labels (given, or
    counted from the last bias's change by :func:`~fedsim.inversion.label_counts.label_counts`,
    see :meth:`_labels`) and :math:`\alpha` = ``tv_weight``. The first epoch batches
    the dummy inputs in order (they are exchangeable); later epochs use permutations drawn
    from ``seed``, since the client's shuffles are unknown. The optimiser,
    box projection, schedule and restarts are those of :class:`InvertingGradients`; the
    gradient through the :math:`T = E\lceil N/B\rceil` unrolled steps is exact (double
    backward). Dimitrov et al. also fit per-epoch copies of the inputs tied by an
    order-invariant prior; this attack keeps one copy.

    Parameters
    ----------
    iterations, restarts, lr, tv_weight, lr_decay, seed
        As in :class:`InvertingGradients`.
    local_epochs : int
        :math:`E \ge 1`, the client's local epochs.
    local_batch_size : int
        :math:`B \ge 1`, the client's batch size.
    local_lr : float
        :math:`\eta > 0`, the client's SGD learning rate.
    local_momentum : float
        The client's SGD momentum, in [0, 1).
    local_weight_decay : float
        The client's weight decay (≥ 0).

    Raises
    ------
    InvalidSettingError
        A setting is out of range (e.g. ``local_epochs=0``).

    References
    ----------
    Dimitrov, Balunović, Konstantinov, Vechev. Data Leakage in Federated Averaging. TMLR 2022.

    Examples
    --------
    >>> import torch
    >>> from fedsim.inversion.updates import update_as_gradient
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    >>> after = simulate_local_sgd(model, x, torch.eye(2), [torch.arange(2)] * 2,
    ...                            batch_size=1, lr=0.5)
    >>> delta = [after[n].detach() - p for n, p in model.named_parameters()]
    >>> attack = FedAvgInversion(iterations=20, local_epochs=2, local_batch_size=1, local_lr=0.5)
    >>> rec = attack(model, update_as_gradient(delta, lr=0.5, local_steps=4),
    ...              input_shape=(1, 2, 2), num_classes=2, batch_size=2, label=y)
    >>> tuple(rec.x.shape), rec.grad_loss < 1
    ((2, 1, 2, 2), True)
    """

    name = "fedavg_inversion"
    #: The inversion probe fills the ``local_*`` settings from the scenario's ``clients``.
    simulates_local_training: ClassVar[bool] = True

    def __init__(
        self,
        iterations: int = 300,
        restarts: int = 1,
        lr: float = 0.1,
        tv_weight: float = 1e-4,
        lr_decay: bool = True,
        local_epochs: int = 1,
        local_batch_size: int = 32,
        local_lr: float = 0.05,
        local_momentum: float = 0.0,
        local_weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            iterations=iterations,
            restarts=restarts,
            lr=lr,
            tv_weight=tv_weight,
            lr_decay=lr_decay,
            seed=seed,
        )
        self.local_epochs = require_int(self.name, "local_epochs", local_epochs, minimum=1)
        self.local_batch_size = require_int(
            self.name, "local_batch_size", local_batch_size, minimum=1
        )
        self.local_lr = require_real(self.name, "local_lr", local_lr, low=0, low_open=True)
        self.local_momentum = require_real(
            self.name, "local_momentum", local_momentum, low=0, high=1, high_open=True
        )
        self.local_weight_decay = require_real(
            self.name, "local_weight_decay", local_weight_decay, low=0
        )

    def _labels(
        self,
        model: nn.Module,
        targets: Sequence[torch.Tensor],
        num_classes: int,
        batch_size: int,
        label: torch.Tensor | None,
        device: torch.device,
        *,
        shape: tuple[int, int, int],
        data_range: tuple[float, float],
    ) -> torch.Tensor | None:
        r"""Given labels, or counts read from the last bias (:func:`label_counts`).

        The target of the last ``(K,)`` bias is :math:`-\Delta b/(\eta T)`; the mean softmax
        :math:`\bar p` is the mean of the global model's (:math:`w_0`) and the updated model's
        (:math:`w_0 + \Delta`) softmax on 64 inputs uniform in the data range (seeded): Wainakh
        et al.'s estimate across the local steps. Without a ``(K,)`` bias last, the iDLG
        recovery of the base class.
        """
        params = list(model.parameters())
        if label is not None or tuple(params[-1].shape) != (num_classes,):
            return super()._labels(
                model,
                targets,
                num_classes,
                batch_size,
                label,
                device,
                shape=shape,
                data_range=data_range,
            )
        lo, hi = data_range
        steps = self.local_epochs * math.ceil(batch_size / self.local_batch_size)
        bias_delta = -targets[-1].detach().double().cpu() * self.local_lr * steps
        generator = torch.Generator().manual_seed(self.seed)
        aux = lo + (hi - lo) * torch.rand((64, *shape), generator=generator)
        aux = aux.to(device=device, dtype=params[0].dtype)
        names = [name for name, _ in model.named_parameters()]
        scale = self.local_lr * steps
        moved = {n: p.detach() - scale * t for n, p, t in zip(names, params, targets, strict=True)}
        with torch.no_grad():
            start = model(aux).softmax(dim=1).mean(dim=0)
            end = functional_call(model, moved, (aux,)).softmax(dim=1).mean(dim=0)
        probs = ((start + end) / 2).double().cpu()
        counts = label_counts(
            bias_delta,
            probs,
            num_examples=batch_size,
            batch_size=self.local_batch_size,
            lr=self.local_lr,
            epochs=self.local_epochs,
        )
        return torch.repeat_interleave(torch.arange(num_classes), counts).to(device)

    def dummy_gradients(
        self,
        model: nn.Module,
        params: Sequence[torch.Tensor],
        x: torch.Tensor,
        soft_labels: torch.Tensor,
        *,
        create_graph: bool,
    ) -> list[torch.Tensor]:
        r"""The simulated update read as a gradient, :math:`(w_0 - w_T)/(\eta T)`, per param."""
        n = len(x)
        generator = torch.Generator().manual_seed(self.seed)
        orders = [torch.arange(n)] + [
            torch.randperm(n, generator=generator) for _ in range(self.local_epochs - 1)
        ]
        after = simulate_local_sgd(
            model,
            x,
            soft_labels,
            [o.to(x.device) for o in orders],
            batch_size=self.local_batch_size,
            lr=self.local_lr,
            momentum=self.local_momentum,
            weight_decay=self.local_weight_decay,
            create_graph=create_graph,
        )
        scale = self.local_lr * self.local_epochs * math.ceil(n / self.local_batch_size)
        by_id = {id(p): name for name, p in model.named_parameters()}
        reading = [(p.detach() - after[by_id[id(p)]]) / scale for p in params]
        return reading if create_graph else [g.detach() for g in reading]
