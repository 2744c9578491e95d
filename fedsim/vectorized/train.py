"""Many clients' local training as one batched computation (the vectorized runtime's core).

:func:`train_clients_vectorized` gives each client the result of its one-client procedure —
:func:`fedsim.training.train_local` (plain SGD) or :func:`fedsim.privacy.train_dp_sgd`
(DP-SGD with Opacus' clipping and noise) — within float tolerance, from the same generators:

1. **Grouping.** Clients are sorted by local step count, longest first, and cut into chunks
   of ``chunk_size`` (:func:`~fedsim.vectorized.memory.auto_chunk_size` when not given, halved
   whenever a chunk runs out of GPU memory), so a chunk holds clients with similar step counts.
2. **Plan.** Each chunk's batches (and DP noise) are drawn client by client from their own
   generators, as they would draw them alone, and padded (:mod:`fedsim.vectorized.plan`).
3. **Steps.** Step t updates the clients that still have a step t: being sorted, they are a
   prefix of the chunk, so finished clients simply drop out of the batched computation (no
   work is spent on them). Within a step, padding slots of a shorter batch (a short last batch,
   a Poisson batch below the widest) carry weight 0 (:mod:`fedsim.vectorized.steps`).

Differences from the one-client loops are floating-point only (the batched kernels sum in
another order); the draws are identical. On the CPU this runs on all of torch's threads (the
one-client loops use one), so results are reproducible for a given thread count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fedsim.data.transforms import Augment
from fedsim.errors import InvalidSettingError, RunError
from fedsim.privacy.dp_sgd import DPSettings
from fedsim.training import AdversarialSettings, TrainResult, TrainSettings
from fedsim.vectorized.memory import auto_chunk_size
from fedsim.vectorized.plan import ChunkPlan, LocalTask, build_plan, planned_steps
from fedsim.vectorized.steps import (
    Params,
    adversarial_clipped_grad_sum,
    adversarial_grads,
    clipped_grad_sum,
    flatten_params,
    masked_mean_grads,
    sgd_step,
    stack_params,
)
from fedsim.vectorized.support import unsupported_reason

__all__ = ["ClientOutcome", "train_clients_vectorized"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientOutcome:
    """One client's trained flat weights (the model's dtype, CPU) and its :class:`TrainResult`."""

    weights: torch.Tensor
    result: TrainResult


def train_clients_vectorized(
    model: nn.Module,
    tasks: Sequence[LocalTask],
    settings: TrainSettings,
    *,
    augment: Augment | None = None,
    dp: DPSettings | None = None,
    chunk_size: int | None = None,
    adversarial: AdversarialSettings | None = None,
) -> list[ClientOutcome]:
    """Train every task's client locally, all at once; return their outcomes in task order.

    Parameters
    ----------
    model : nn.Module
        The architecture, on the device to train on; its own weights are not used or changed.
    tasks : sequence of LocalTask
        Each client's start weights, data and generator (advanced as its own loop would).
    settings : TrainSettings
        Epochs E, batch size B, lr, momentum and weight decay of every client.
    augment : Augment, optional
        Per-batch augmentation (plain SGD only, as on the other runtimes).
    dp : DPSettings, optional
        Train with DP-SGD: clip C, Poisson or shuffled batches, and each task's σ.
    adversarial : AdversarialSettings, optional
        Adversarial training: each batch's loss is :meth:`fedsim.evasion.AdversarialTraining.loss`,
        as :func:`fedsim.training.train_local` (or, with ``dp``,
        :func:`fedsim.privacy.train_dp_sgd`) computes it with ``adversarial``.
    chunk_size : int, optional
        Clients per batched chunk; automatic when omitted, and then halved (with a warning)
        after running out of GPU memory, the chunk redone from the same generator states.

    Returns
    -------
    list of ClientOutcome
        ``result.loss`` is the mean batch loss over the steps for plain SGD and the mean
        per-example loss for DP-SGD (``nan`` if every Poisson batch was empty), as the
        one-client loops report it.

    Raises
    ------
    InvalidSettingError
        The model cannot be vectorized (:func:`~fedsim.vectorized.support.unsupported_reason`),
        or B exceeds a DP-SGD client's data.
    RunError
        Out of GPU memory with a given ``chunk_size``, or with one client per chunk.

    Examples
    --------
    >>> from fedsim.training import train_local
    >>> g = torch.Generator().manual_seed(0)
    >>> model = nn.Linear(3, 2)
    >>> x, y = torch.randn(10, 1, 1, 3, generator=g), torch.randint(0, 2, (10,), generator=g)
    >>> net = nn.Sequential(nn.Flatten(), model)
    >>> start = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    >>> settings = TrainSettings(epochs=2, batch_size=4, lr=0.1, momentum=0.9)
    >>> task = LocalTask(start, x, y, torch.Generator().manual_seed(1))
    >>> [out] = train_clients_vectorized(net, [task], settings)
    >>> alone = train_local(net, x, y, settings, torch.Generator().manual_seed(1))
    >>> trained = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    >>> torch.allclose(out.weights, trained, atol=1e-6), out.result.steps == alone.steps
    (True, True)
    """
    if (reason := unsupported_reason(model)) is not None:
        raise InvalidSettingError(f"the vectorized runtime cannot train this model: {reason}")
    if dp is not None and augment is not None:
        raise InvalidSettingError("DP-SGD trains without augmentation on every runtime")
    if not tasks:
        return []
    device = next(model.parameters()).device
    steps = [planned_steps(len(t.y), settings, dp) for t in tasks]
    order = sorted(range(len(tasks)), key=lambda i: -steps[i])
    automatic = chunk_size is None
    if chunk_size is None:
        longest = tasks[order[0]]
        chunk_size = auto_chunk_size(
            model,
            longest.x[:1],
            settings,
            num_inputs=len(longest.y) * (settings.epochs if augment is not None else 1),
            steps=steps[order[0]],
            dp=dp is not None,
            device=device,
        )
    if chunk_size < 1:
        raise InvalidSettingError(f"chunk_size must be at least 1, got {chunk_size}")
    outcomes: list[ClientOutcome | None] = [None] * len(tasks)
    was_training = model.training
    model.train()
    try:
        start = 0
        while start < len(order):
            ids = order[start : start + chunk_size]
            chunk = [tasks[i] for i in ids]
            states = [t.generator.get_state() for t in chunk]
            try:
                trained, losses = _train_chunk(model, chunk, settings, augment, dp, adversarial)
            except torch.cuda.OutOfMemoryError as e:
                if not automatic or len(ids) == 1:
                    raise RunError(
                        f"out of GPU memory training {len(ids)} clients together; set "
                        "vectorized.chunk_size lower"
                    ) from e
                chunk_size = len(ids) // 2
            else:
                trained = trained.cpu()  # one device-to-host copy per chunk, not per client
                for row, i in enumerate(ids):
                    result = TrainResult(losses[row], steps[i], len(tasks[i].y))
                    outcomes[i] = ClientOutcome(trained[row], result)
                start += len(ids)
                continue
            # out of memory: the chunk's memory is free now; redo it with fewer clients
            for task, state in zip(chunk, states, strict=True):
                task.generator.set_state(state)  # the same draws again
            torch.cuda.empty_cache()
            log.warning(
                "out of GPU memory with %d clients per chunk: using %d", len(ids), chunk_size
            )
    finally:
        model.train(was_training)
    return [o for o in outcomes if o is not None]


def _train_chunk(
    model: nn.Module,
    tasks: Sequence[LocalTask],
    settings: TrainSettings,
    augment: Augment | None,
    dp: DPSettings | None,
    adversarial: AdversarialSettings | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Plan and run every step of one chunk; return the trained ``(K, d)`` weights and losses."""
    parameters = list(model.parameters())
    device, dtype = parameters[0].device, parameters[0].dtype
    plan = build_plan(
        tasks,
        settings,
        augment=augment,
        dp=dp,
        adversarial=adversarial,
        param_shapes=[p.shape for p in parameters],
        param_dtype=dtype,
        device=device,
    )
    first = tasks[0].weights
    if all(t.weights is first for t in tasks):  # a round's clients share one global vector
        weights = first.to(device, dtype).expand(len(tasks), -1)  # copied once, to the device
    else:
        weights = torch.stack([t.weights for t in tasks]).to(device, dtype)
    params = stack_params(model, weights)
    momenta = {k: torch.zeros_like(v) for k, v in params.items()} if settings.momentum else None
    k = len(weights)
    loss_sum = torch.zeros(k, device=device)  # plain SGD: float32 sum of batch means
    example_loss = torch.zeros(k, dtype=torch.float64, device=device)  # DP-SGD: Σ mean · count
    seen = torch.zeros(k, dtype=torch.float64, device=device)
    plain = (
        masked_mean_grads(model) if adversarial is None else adversarial_grads(model, adversarial)
    )
    for t in range(len(plan.widths)):
        a = plan.active(t)
        x, y, w = plan.batch(t)
        live = {name: p[:a] for name, p in params.items()}
        if adversarial is not None and dp is None:
            start, replace = plan.adversarial_batch(t)
            grads, loss = plain(live, x, y, w, start, replace)
            loss_sum[:a] += loss
        elif dp is None:
            grads, loss = plain(live, x, y, w)
            loss_sum[:a] += loss
        else:
            if adversarial is None:
                grads, losses = clipped_grad_sum(model, live, x, y, w, dp.max_grad_norm)
            else:
                start, replace = plan.adversarial_batch(t)
                grads, losses = adversarial_clipped_grad_sum(
                    model, adversarial, live, x, y, w, start, replace, dp.max_grad_norm
                )
            count = w.sum(dim=1).to(torch.float64)
            mean = (losses * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
            example_loss[:a] += mean.to(torch.float64) * count
            seen[:a] += count
            grads = _noisy_mean(grads, plan, t, a, settings.batch_size)
        sgd_step(params, grads, momenta, a, settings, first=t == 0)
    if dp is None:
        losses_out = [
            float(s) / max(n, 1) for s, n in zip(loss_sum.tolist(), plan.steps, strict=True)
        ]
    else:
        losses_out = [
            s / n if n else math.nan
            for s, n in zip(example_loss.tolist(), seen.tolist(), strict=True)
        ]
    return flatten_params(params), losses_out


def _noisy_mean(grads: Params, plan: ChunkPlan, step: int, active: int, batch_size: int) -> Params:
    """(clipped sum + noise) / B per parameter, Opacus' ``add_noise`` then ``scale_grad``."""
    if plan.noise is None:
        return {name: g / batch_size for name, g in grads.items()}
    noise = plan.noise[:active, step]
    out: Params = {}
    offset = 0
    for name, g in grads.items():
        n = g[0].numel()
        out[name] = (g + noise[:, offset : offset + n].reshape(g.shape)) / batch_size
        offset += n
    return out
