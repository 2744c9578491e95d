"""Batch plans: what every client of a chunk does at each local step, drawn as it would alone.

Before any arithmetic, a :class:`ChunkPlan` fixes for each client of a chunk and each local
step which of its examples form the batch and, under DP-SGD, the Gaussian noise it adds. The
draws come from each client's own generator in exactly the order of the one-client loops:

- :func:`fedsim.training.train_local`: :func:`~fedsim.training.minibatches` (per epoch
  ``randperm(N)`` cut into batches of B, the last one shorter when B does not divide N), and
  ``augment(x[batch], generator)`` after each batch is drawn;
- :func:`fedsim.privacy.train_dp_sgd`: the noise generator first (the client's generator on
  the CPU; on a GPU a device generator seeded from it), then per epoch ``draw_batches``
  (Poisson masks at q = B/N, or a shuffle cut into ⌊N/B⌋ batches of B), then for each step
  of the epoch the noise, one ``torch.normal(0, σC, p.shape)`` per parameter tensor p as
  Opacus' ``DPOptimizer`` draws it (none when σ = 0).

With adversarial training (:class:`~fedsim.training.AdversarialSettings`) each batch's random
draws of :meth:`fedsim.evasion.AdversarialTraining.draw` (the attack's start in pixel space,
FAT's replaced samples) come right after the batch (and its augmentation), as in
:func:`~fedsim.training.train_local`.

So a client's batches, augmentations, adversarial starts and noise are the ones it gets on the
other runtimes.

Clients are padded to a common shape: slot ``j`` of step ``t`` of client ``k`` holds example
``index[k, t, j]`` of its ``inputs[k]`` with weight ``weight[k, t, j]`` (1 for a real example,
0 for padding). Clients are ordered by step count, longest first, so the clients still training
at step ``t`` are always a prefix of the chunk (:meth:`ChunkPlan.active`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fedsim.data.transforms import Augment
from fedsim.evasion import AdversarialDraw
from fedsim.privacy.dp_sgd import (
    DPSettings,
    InsertedGradients,
    draw_batches,
    local_steps,
    noise_generator,
)
from fedsim.training import AdversarialSettings, TrainSettings, minibatches

__all__ = ["ChunkPlan", "DPSettings", "LocalTask", "build_plan", "planned_steps"]


@dataclass(frozen=True)
class LocalTask:
    """One client's local training.

    Attributes
    ----------
    weights : torch.Tensor
        The flat weights it starts from (the global model, usually), shape ``(d,)``.
    x, y : torch.Tensor
        Its N inputs and integer labels (CPU).
    generator : torch.Generator
        Its seeded generator (CPU); every draw of its training comes from it.
    noise_multiplier : float
        σ of its DP-SGD (read only when training with :class:`DPSettings`).
    inserted : InsertedGradients, optional
        Gradients its DP-SGD adds to chosen steps' clipped sums (an audit's canaries); the plan
        adds them to those steps' noise, which the step adds to the clipped sum.
    """

    weights: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    generator: torch.Generator
    noise_multiplier: float = 0.0
    inserted: InsertedGradients | None = None


@dataclass(frozen=True)
class ChunkPlan:
    """The padded batches (and noise) of a chunk of K clients over S steps of width W.

    Attributes
    ----------
    inputs : torch.Tensor
        ``(K, M, *sample_shape)``: each client's examples (augmented copies when augmenting).
    labels : torch.Tensor
        ``(K, M)`` integer labels.
    index : torch.Tensor
        ``(K, S, W)`` positions into ``inputs[k]``; 0 in padding slots.
    weight : torch.Tensor
        ``(K, S, W)`` float: 1 for a real example, 0 for padding.
    steps : list of int
        Each client's step count, non-increasing.
    widths : list of int
        Per step, the widest real batch among the clients still training (at least 1).
    noise : torch.Tensor or None
        ``(K, S, P)`` DP-SGD noise on the flat parameters, plus each task's inserted gradients
        (``None``: neither).
    starts, replace : torch.Tensor or None
        Adversarial training: ``(K, S, W, *sample)`` the attack's first iterates (pixel space;
        0 in padding slots) and ``(K, S, W)`` bool, the samples it replaces (``None``: none).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    weight: torch.Tensor
    steps: list[int]
    widths: list[int]
    noise: torch.Tensor | None
    starts: torch.Tensor | None = None
    replace: torch.Tensor | None = None

    def active(self, step: int) -> int:
        """How many clients (a prefix of the chunk) still train at ``step``."""
        return sum(1 for s in self.steps if s > step)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs ``(a, w, ...)``, labels ``(a, w)`` and weights ``(a, w)`` of ``step``.

        ``a`` is :meth:`active` and ``w`` the step's width.
        """
        a, w = self.active(step), self.widths[step]
        index = self.index[:a, step, :w]
        rows = torch.arange(a, device=index.device).unsqueeze(1)
        return self.inputs[rows, index], self.labels[rows, index], self.weight[:a, step, :w]

    def adversarial_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Adversarial starts ``(a, w, ...)`` and replaced-sample masks ``(a, w)`` of ``step``."""
        if self.starts is None or self.replace is None:
            raise ValueError("the plan has no adversarial draws")
        a, w = self.active(step), self.widths[step]
        return self.starts[:a, step, :w], self.replace[:a, step, :w]


def planned_steps(num_examples: int, settings: TrainSettings, dp: DPSettings | None) -> int:
    """Local steps of a client with ``num_examples`` examples.

    ``E·⌈N/B⌉`` for plain SGD (every example once per epoch), ``E·⌊N/B⌋`` for DP-SGD
    (:func:`fedsim.privacy.dp_sgd.local_steps`, which raises when B > N).

    Examples
    --------
    >>> settings = TrainSettings(epochs=2, batch_size=32, lr=0.1)
    >>> planned_steps(100, settings, None), planned_steps(100, settings, DPSettings(1.0))
    (8, 6)
    """
    if dp is not None:
        return local_steps(num_examples, settings.batch_size, settings.epochs)
    return settings.epochs * math.ceil(num_examples / settings.batch_size)


def build_plan(
    tasks: Sequence[LocalTask],
    settings: TrainSettings,
    *,
    augment: Augment | None = None,
    dp: DPSettings | None = None,
    adversarial: AdversarialSettings | None = None,
    param_shapes: Sequence[torch.Size] = (),
    param_dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> ChunkPlan:
    """Draw every task's batches (and DP noise) and pad them into one :class:`ChunkPlan`.

    ``tasks`` must be ordered by :func:`planned_steps`, longest first. Each task's generator
    is advanced exactly as its one-client loop would advance it. ``param_shapes`` and
    ``param_dtype`` (the model's parameter shapes, in order, and their dtype) are needed for
    the DP noise. ``adversarial`` adds each batch's adversarial draws.
    """
    device = torch.device(device)
    parts = [
        _sgd_part(task, settings, augment, adversarial)
        if dp is None
        else _dp_part(task, settings, dp, param_shapes, param_dtype, device, adversarial)
        for task in tasks
    ]
    steps = [len(batches) for _, _, batches, _, _ in parts]
    if steps != sorted(steps, reverse=True):
        raise ValueError(f"tasks must come longest first, got step counts {steps}")
    sample_shape = tasks[0].x.shape[1:]
    k, s = len(tasks), max(steps, default=0)
    m = max((len(y) for _, y, _, _, _ in parts), default=0)
    w = max((len(b) for _, _, batches, _, _ in parts for b in batches), default=0)
    inputs = torch.zeros((k, max(m, 1), *sample_shape), dtype=tasks[0].x.dtype)
    labels = torch.zeros((k, max(m, 1)), dtype=tasks[0].y.dtype)
    index = torch.zeros((k, s, max(w, 1)), dtype=torch.long)
    weight = torch.zeros((k, s, max(w, 1)))
    widths = [1] * s
    for row, (x, y, batches, _, _) in enumerate(parts):
        inputs[row, : len(y)], labels[row, : len(y)] = x, y
        for t, batch in enumerate(batches):
            index[row, t, : len(batch)] = batch
            weight[row, t, : len(batch)] = 1.0
            widths[t] = max(widths[t], len(batch))
    noise = None
    if dp is not None and any(n is not None for *_, n, _ in parts):
        size = sum(math.prod(shape) for shape in param_shapes)
        noise = torch.zeros((k, s, size), dtype=param_dtype, device=device)
        for row, (*_, drawn, _) in enumerate(parts):
            if drawn is not None and len(drawn):
                noise[row, : len(drawn)] = drawn
    starts = replace = None
    if adversarial is not None:
        starts = torch.zeros((k, s, max(w, 1), *sample_shape), dtype=tasks[0].x.dtype)
        replace = torch.zeros((k, s, max(w, 1)), dtype=torch.bool)
        for row, (*_, draws) in enumerate(parts):
            for t, draw in enumerate(draws or []):
                starts[row, t, : len(draw.start)] = draw.start
                replace[row, t, : len(draw.replace)] = draw.replace
        starts, replace = starts.to(device), replace.to(device)
    return ChunkPlan(
        inputs=inputs.to(device),
        labels=labels.to(device),
        index=index.to(device),
        weight=weight.to(device),
        steps=steps,
        widths=widths,
        noise=noise,
        starts=starts,
        replace=replace,
    )


_Part = tuple[
    torch.Tensor,
    torch.Tensor,
    list[torch.Tensor],
    torch.Tensor | None,
    list[AdversarialDraw] | None,
]


def _sgd_part(
    task: LocalTask,
    settings: TrainSettings,
    augment: Augment | None,
    adversarial: AdversarialSettings | None = None,
) -> _Part:
    """One client's batches, drawn as :func:`fedsim.training.train_local` draws them."""
    generator = task.generator
    draws: list[AdversarialDraw] | None = None if adversarial is None else []
    if augment is None and adversarial is None:
        return task.x, task.y, list(minibatches(len(task.y), settings, generator)), None, None
    batches: list[torch.Tensor] = []
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    offset = 0
    for batch in minibatches(len(task.y), settings, generator):
        xb = task.x[batch] if augment is None else augment(task.x[batch], generator)
        if adversarial is not None and draws is not None:  # after the augmentation's draws
            draws.append(adversarial.training.draw(adversarial.pixels(xb), generator))
        if augment is None:
            batches.append(batch)
            continue
        xs.append(xb)  # between the shuffles, as train_local
        ys.append(task.y[batch])
        batches.append(torch.arange(offset, offset + len(batch)))
        offset += len(batch)
    if not xs:
        return task.x, task.y, batches, None, draws
    return torch.cat(xs), torch.cat(ys), batches, None, draws


def _dp_part(
    task: LocalTask,
    settings: TrainSettings,
    dp: DPSettings,
    param_shapes: Sequence[torch.Size],
    param_dtype: torch.dtype,
    device: torch.device,
    adversarial: AdversarialSettings | None = None,
) -> _Part:
    """One client's batches and noise, drawn as :func:`fedsim.privacy.train_dp_sgd` draws them.

    With ``adversarial``, each non-empty batch's adversarial draws come just before the step's
    noise (empty Poisson batches draw none).
    """
    n, generator = len(task.y), task.generator
    steps_per_epoch = local_steps(n, settings.batch_size, settings.epochs) // settings.epochs
    std = task.noise_multiplier * dp.max_grad_norm
    noise_source = noise_generator(generator, device)
    batches: list[torch.Tensor] = []
    noise: list[torch.Tensor] = []
    draws: list[AdversarialDraw] | None = None if adversarial is None else []
    for _ in range(settings.epochs):
        epoch = draw_batches(
            n, settings.batch_size, steps_per_epoch, dp.poisson_sampling, generator
        )
        for batch in epoch:
            batches.append(batch.cpu())
            if adversarial is not None and draws is not None:
                if len(batch):
                    pixels = adversarial.pixels(task.x[batch.cpu()])
                    draws.append(adversarial.training.draw(pixels, generator))
                else:
                    empty = task.x[:0]
                    draws.append(AdversarialDraw(empty, torch.zeros(0, dtype=torch.bool)))
            step = None
            if std > 0:  # Opacus draws nothing when the std is 0
                step = _opacus_noise(std, param_shapes, param_dtype, noise_source, device)
            if task.inserted is not None:
                size = sum(math.prod(shape) for shape in param_shapes)
                extra = task.inserted.step_vector(len(batches) - 1, size, param_dtype, device)
                if extra is not None:
                    step = extra if step is None else step + extra
                elif step is None:
                    step = torch.zeros(size, dtype=param_dtype, device=device)
            if step is not None:
                noise.append(step)
    drawn = torch.stack(noise) if noise else None
    return task.x, task.y, batches, drawn, draws


def _opacus_noise(
    std: float,
    shapes: Sequence[torch.Size],
    dtype: torch.dtype,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """One step's noise, flattened: the draws of Opacus' ``_generate_noise``, tensor by tensor."""
    return torch.cat(
        [
            torch.normal(
                mean=0,
                std=std,
                size=shape,
                device=device,
                generator=generator,
                dtype=dtype,
            ).reshape(-1)
            for shape in shapes
        ]
    )
