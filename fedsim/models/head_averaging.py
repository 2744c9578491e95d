r"""Heads averaged over the clients that hold their task (multi-task federations).

In a multi-task federation where clients hold different tasks (``data.task_assignment:
round_robin``), a client's update is zero on the heads of tasks it does not hold (they get
no gradient, so SGD leaves them, momentum and weight decay included, untouched). Averaging
those zeros would shrink every head by the share of non-holders; instead, after the round's
rule has aggregated the whole vector (the backbone over all clients), each head :math:`t` is
replaced by the weighted mean over the accepted clients :math:`A` that hold :math:`t`:

.. math:: \bar\Delta_{[t]} = \frac{\sum_{i \in A \cap H_t} n_i \Delta_{i,[t]}}
                                  {\sum_{i \in A \cap H_t} n_i},

:math:`H_t` the holders of task :math:`t`, :math:`n_i` client :math:`i`'s example count and
:math:`\Delta_{i,[t]}` its update restricted to head :math:`t`'s coordinates. With no holder
in the round the head does not move. With FedAvg the backbone is FedAvg over everyone and
each head FedAvg over its holders; a robust rule still decides which clients are accepted
and defends the backbone, but a head is a plain mean over its accepted holders (fedsim's
choice: a robust rule over the few holders of a head would act on a different cohort).

Example
-------
Two clients, head ``b`` on coordinates 2–3 held by client 1 only:

>>> updates = torch.tensor([[1.0, 1.0, 0.0, 0.0], [3.0, 3.0, 4.0, 4.0]], dtype=torch.float64)
>>> weights = torch.tensor([1.0, 3.0], dtype=torch.float64)
>>> fedavg = weights @ updates / weights.sum()
>>> holder_mean_heads(fedavg, updates, weights, {"b": slice(2, 4)}, {"b": [False, True]}).tolist()
[2.5, 2.5, 4.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["holder_mean_heads"]


def holder_mean_heads(
    aggregate: torch.Tensor,
    updates: torch.Tensor,
    weights: torch.Tensor,
    heads: Mapping[str, slice],
    holds: Mapping[str, Sequence[bool]],
) -> torch.Tensor:
    """The aggregate with each head's coordinates replaced by its holders' weighted mean.

    Parameters
    ----------
    aggregate : Tensor
        The rule's ``(d,)`` aggregate (left unchanged; a copy is returned).
    updates : Tensor
        ``(n, d)`` accepted updates.
    weights : Tensor
        ``(n,)`` example counts :math:`n_i`.
    heads : Mapping[str, slice]
        Each head's coordinates (:meth:`MultiTaskModel.head_slices`).
    holds : Mapping[str, sequence of bool]
        For each task, which of the ``n`` rows hold it.

    Returns
    -------
    Tensor
        The ``(d,)`` corrected aggregate.
    """
    result = aggregate.clone()
    for task, where in heads.items():
        mask = torch.as_tensor(list(holds[task]), dtype=torch.bool, device=updates.device)
        if len(mask) != len(updates):
            raise ValueError(f"task {task!r}: {len(mask)} holder flags for {len(updates)} rows")
        if not bool(mask.any()):
            result[where] = 0.0
            continue
        w = weights[mask].to(updates.dtype)
        result[where] = (w @ updates[mask][:, where]) / w.sum()
    return result
