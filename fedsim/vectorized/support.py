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

from torch import nn

__all__ = ["unsupported_reason"]

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
