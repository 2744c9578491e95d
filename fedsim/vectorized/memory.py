r"""How many clients train together: a chunk that fits the GPU's free memory.

On a GPU the chunk size is

.. math:: K = \max\Big(1, \Big\lfloor \frac{\phi \cdot F}{m} \Big\rfloor\Big),

with F the free device memory (``torch.cuda.mem_get_info``), φ = :data:`MEMORY_FRACTION` the
share of it a chunk may use, and m an estimate of one client's bytes (float32, 4 bytes each):

.. math:: m = 4\,(6P + 3BA + N_x) + 16\,SB \;[+\; 4\,(2BP + SP) \text{ with DP-SGD}],

where P is the number of parameters (the client's weights, momentum, gradient and the
temporaries of an update), A the activation values of one sample (every layer's output,
measured by one forward pass), B the batch size (kept for the backward pass, their gradients
and temporaries: 3BA), :math:`N_x` the values of the client's inputs, S its step count (the
plan's index and weight, 16 bytes per slot), and under DP-SGD the B per-sample gradients (and
their clipped products) and the S noise vectors. The estimate is deliberately generous;
φ leaves room for what it misses. On the CPU memory is rarely the limit and large chunks
only thrash the caches, so the chunk is :data:`CPU_CHUNK_SIZE` clients.

``vectorized.chunk_size`` in a scenario overrides both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fedsim.training import TrainSettings

__all__ = ["CPU_CHUNK_SIZE", "MEMORY_FRACTION", "auto_chunk_size", "client_bytes"]

CPU_CHUNK_SIZE = 16
"""Clients per chunk on the CPU."""

MEMORY_FRACTION = 0.5
"""Share of the free GPU memory one chunk may use (φ)."""


def client_bytes(
    model: nn.Module,
    sample: torch.Tensor,
    settings: TrainSettings,
    *,
    num_inputs: int,
    steps: int,
    dp: bool,
) -> int:
    """Estimated device bytes of one client in a chunk (m in the module docstring).

    Parameters
    ----------
    model : nn.Module
        The architecture (one forward pass on ``sample`` measures A).
    sample : torch.Tensor
        One input, with its batch dimension: ``(1, *sample_shape)``.
    settings : TrainSettings
        The batch size B.
    num_inputs : int
        How many inputs the client keeps on the device (N, or E·N augmented copies).
    steps : int
        S, the client's local steps.
    dp : bool
        Whether it trains with DP-SGD.
    """
    params = sum(p.numel() for p in model.parameters())
    activations = _activation_values(model, sample)
    b = settings.batch_size
    values = 6 * params + 3 * b * activations + num_inputs * math.prod(sample.shape[1:])
    if dp:
        values += 2 * b * params + steps * params
    return 4 * values + 16 * steps * b


def auto_chunk_size(
    model: nn.Module,
    sample: torch.Tensor,
    settings: TrainSettings,
    *,
    num_inputs: int,
    steps: int,
    dp: bool,
    device: torch.device,
) -> int:
    """Clients per chunk on ``device`` (see the module docstring); at least 1."""
    if device.type != "cuda":
        return CPU_CHUNK_SIZE
    free, _ = torch.cuda.mem_get_info(device)
    per_client = client_bytes(model, sample, settings, num_inputs=num_inputs, steps=steps, dp=dp)
    return max(1, int(MEMORY_FRACTION * free // per_client))


def _activation_values(model: nn.Module, sample: torch.Tensor) -> int:
    """Values every leaf layer outputs for one sample (A)."""
    total = 0

    def count(_module: nn.Module, _inputs: Sequence[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(sample.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return total
