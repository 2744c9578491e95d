"""A trial vectorized step: does this model train under ``torch.func.vmap``? (preflight)."""

from __future__ import annotations

import torch
from torch import nn

from fedsim.privacy.dp_sgd import DPSettings
from fedsim.training import TrainSettings
from fedsim.vectorized.plan import LocalTask
from fedsim.vectorized.support import unsupported_reason
from fedsim.vectorized.train import train_clients_vectorized

__all__ = ["trial_step"]


def trial_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dp: bool) -> str | None:
    """Run one tiny vectorized step (two clients, two samples each); why it fails, or ``None``.

    Catches what :func:`unsupported_reason` cannot see, such as a forward pass that branches
    on tensor values (not traceable by ``vmap``). ``x`` and ``y`` hold at least two samples.
    """
    if (reason := unsupported_reason(model)) is not None:
        return reason
    weights = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    tasks = [LocalTask(weights, x[:2], y[:2], torch.Generator().manual_seed(i)) for i in (0, 1)]
    settings = TrainSettings(epochs=1, batch_size=2, lr=1e-3)
    try:
        train_clients_vectorized(model, tasks, settings, dp=DPSettings(1.0) if dp else None)
    except Exception as e:  # noqa: BLE001  (any failure is the reason to refuse)
        return f"one batched step failed: {type(e).__name__}: {e}"
    return None
