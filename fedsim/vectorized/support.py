"""Which models the vectorized runtime can train: the ones whose clients can be stacked.

Many clients train together as one function of their stacked parameters
(:func:`torch.func.functional_call` under :func:`torch.func.vmap`). That is exact only for a
model whose output on one sample depends on nothing but that sample and the parameters:

- no BatchNorm: it mixes the samples of a batch (so padding slots would change the
  statistics) and updates running statistics (buffers) that a functional step does not carry;
- no buffers at all, for the same reason (state the training step would have to update);
- no dropout or other random layers: their draws would come from the global RNG inside
  ``vmap``, not from the client's seeded generator;
- every parameter trainable: the local SGD updates all of them.

fedsim's own models (``mlp``, ``cnn``, ``lenet5``, ``resnet``, ``lenet_sigmoid``) use GroupNorm
or no normalisation and pass.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["trial_step", "unsupported_reason"]

_BATCH_NORM = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)
_RANDOM = (nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)


def unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained vectorized, or ``None`` when it can.

    Examples
    --------
    >>> unsupported_reason(nn.Sequential(nn.Linear(4, 2), nn.GroupNorm(1, 2))) is None
    True
    >>> unsupported_reason(nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)))
    "layer '1' is BatchNorm1d: it mixes the samples of a batch; use GroupNorm"
    """
    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, _BATCH_NORM):
            return f"layer {name!r} is {kind}: it mixes the samples of a batch; use GroupNorm"
        if isinstance(module, _RANDOM):
            return f"layer {name!r} is {kind}: its random draws cannot be seeded per client"
    for name, _ in model.named_buffers():
        return f"the model has a buffer {name!r}: state a functional training step cannot carry"
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            return f"parameter {name!r} is frozen: vectorized local SGD trains every parameter"
    return None


def trial_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dp: bool) -> str | None:
    """Run one tiny vectorized step (two clients, two samples each); why it fails, or ``None``.

    Catches what :func:`unsupported_reason` cannot see, such as a forward pass that branches
    on tensor values (not traceable by ``vmap``). ``x`` and ``y`` hold at least two samples.
    """
    from fedsim.training import TrainSettings
    from fedsim.vectorized.plan import DPSettings, LocalTask
    from fedsim.vectorized.train import train_clients_vectorized

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
