r"""Watermark removal by a thief holding a leaked copy (data → data): fine-tuning and pruning.

The thief has the global model's weights (threat model ``global_model``: a client, or a leaked
copy) and some data of its own, and wants a model that still works but no longer answers the
owner's triggers. Two classic removal attacks, each with a strength knob:

- **fine-tuning** (:func:`fine_tune`): SGD on the thief's labelled data; strength = learning
  rate × epochs (Adi et al., USENIX Security 2018; WAFFLE's robustness evaluation);
- **magnitude pruning** (:func:`prune`): zero the fraction :math:`q` of weights with the
  smallest :math:`|w|` (Han et al., NeurIPS 2015; Uchida et al., ICMR 2017 on watermarks).

:func:`removal_curve` reports ``watermark_accuracy`` against the copy's clean accuracy for
growing strength: removal succeeds only if the first falls while the second holds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.extraction.surrogate import check_train_settings
from fedsim.training import TrainSettings, evaluate, train_local
from fedsim.validation import require_real
from fedsim.watermark.trigger import TriggerSet, watermark_accuracy

__all__ = ["RemovalPoint", "fine_tune", "prunable", "prune", "removal_curve"]


def fine_tune(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    generator: torch.Generator,
) -> nn.Module:
    r"""A fine-tuned copy of ``model``: ``settings.epochs`` of SGD on the thief's ``(x, y)``.

    Plain :func:`fedsim.training.train_local` on a deep copy (the leaked model is untouched);
    the learning rate and the epochs are the attack's strength.

    Examples
    --------
    >>> model = nn.Linear(2, 2)
    >>> tuned = fine_tune(model, torch.eye(2), torch.tensor([1, 0]),
    ...     TrainSettings(epochs=100, batch_size=2, lr=0.5), torch.Generator().manual_seed(0))
    >>> tuned(torch.eye(2)).argmax(dim=1).tolist(), tuned is model
    ([1, 0], False)

    References
    ----------
    Adi, Baum, Cissé, Pinkas, Keshet. Turning Your Weakness Into a Strength: Watermarking Deep
    Neural Networks by Backdooring. USENIX Security 2018.
    """
    check_train_settings("fine_tune", settings)
    tuned = copy.deepcopy(model)
    train_local(tuned, x, y, settings, generator)
    return tuned


def prunable(model: nn.Module) -> list[nn.Parameter]:
    """The weights pruning acts on: every parameter of dimension ≥ 2 (conv and linear kernels).

    Biases and normalisation scales and shifts are left alone, as in magnitude pruning.

    Examples
    --------
    >>> [tuple(p.shape) for p in prunable(nn.Sequential(nn.Linear(3, 2), nn.GroupNorm(1, 2)))]
    [(2, 3)]
    """
    return [p for p in model.parameters() if p.dim() >= 2]


def prune(model: nn.Module, fraction: float, scope: str = "global") -> nn.Module:
    r"""A copy of ``model`` with the fraction :math:`q` of smallest-magnitude weights zeroed.

    ``global``: the :math:`\lfloor qN \rfloor` weights of smallest :math:`|w|` among all
    :math:`N` prunable weights (:func:`prunable`) are set to 0; ``layer``: the
    :math:`\lfloor q N_l \rfloor` smallest of each prunable tensor :math:`l`. Ties are broken
    by position (a stable sort), so exactly that many are zeroed. :math:`q = 0` returns an
    identical copy.

    Parameters
    ----------
    model : nn.Module
        The leaked model (left untouched).
    fraction : float
        :math:`q \in [0, 1]`.
    scope : {"global", "layer"}
        One threshold for all weights, or one per tensor.

    Returns
    -------
    nn.Module
        The pruned copy.

    Examples
    --------
    >>> model = nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[0.1, -3.0], [2.0, -0.2]]))
    >>> prune(model, 0.5).weight.tolist()
    [[0.0, -3.0], [2.0, 0.0]]

    References
    ----------
    Han, Pool, Tran, Dally. Learning both Weights and Connections for Efficient Neural
    Networks. NeurIPS 2015. Uchida, Nagai, Sakazawa, Satoh. Embedding Watermarks into Deep
    Neural Networks. ICMR 2017.
    """
    require_real("prune", "fraction", fraction, low=0.0, high=1.0)
    if scope not in ("global", "layer"):
        raise InvalidSettingError(f"prune needs scope 'global' or 'layer', got {scope!r}")
    pruned = copy.deepcopy(model)
    params = prunable(pruned)
    with torch.no_grad():
        if scope == "layer":
            for p in params:
                _zero_smallest([p], fraction)
        elif params:
            _zero_smallest(params, fraction)
    return pruned


def _zero_smallest(params: list[nn.Parameter], fraction: float) -> None:
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    k = int(fraction * flat.numel())
    if k == 0:
        return
    order = torch.sort(flat.abs(), stable=True).indices[:k]
    zeroed = torch.zeros_like(flat, dtype=torch.bool)
    zeroed[order] = True
    offset = 0
    for p in params:
        n = p.numel()
        p.masked_fill_(zeroed[offset : offset + n].view_as(p), 0.0)
        offset += n


class RemovalPoint(NamedTuple):
    """One removal attempt: ``method`` (``fine_tune``/``prune``), its ``strength``, figures."""

    method: str
    strength: str
    watermark_accuracy: float
    clean_accuracy: float


def removal_curve(
    model: nn.Module,
    trigger: TriggerSet,
    thief_data: tuple[torch.Tensor, torch.Tensor],
    eval_data: tuple[torch.Tensor, torch.Tensor],
    fine_tunes: Sequence[TrainSettings],
    prune_fractions: Sequence[float],
    generator: torch.Generator,
    scope: str = "global",
) -> list[RemovalPoint]:
    r"""Watermark and clean accuracy of the leaked ``model`` after each removal attempt.

    The first point is the unmodified copy (method ``none``); then one point per fine-tuning
    procedure in ``fine_tunes`` (strength ``"lr=η epochs=E"``, each from the leaked copy with a
    copy of the generator's state, so points do not depend on each other) and one per pruning
    fraction (strength ``"q"``). Clean accuracy is measured on ``eval_data``.

    Examples
    --------
    >>> t = TriggerSet(torch.eye(2), torch.tensor([0, 1]))
    >>> pts = removal_curve(nn.Linear(2, 2), t, (torch.eye(2), torch.tensor([1, 0])),
    ...     (torch.eye(2), torch.tensor([1, 0])), [], [0.0], torch.Generator().manual_seed(0))
    >>> [(p.method, p.strength) for p in pts]
    [('none', '0'), ('prune', '0')]

    References
    ----------
    Tekgul, Xia, Marchal, Asokan. WAFFLE: Watermarking in Federated Learning. SRDS 2021
    (fine-tuning and pruning as removal attacks).
    """
    eval_x, eval_y = eval_data

    def point(method: str, strength: str, m: nn.Module) -> RemovalPoint:
        return RemovalPoint(
            method, strength, watermark_accuracy(m, trigger), evaluate(m, eval_x, eval_y).accuracy
        )

    points = [point("none", "0", model)]
    state = generator.get_state()
    for s in fine_tunes:
        g = torch.Generator().set_state(state)
        tuned = fine_tune(model, *thief_data, s, g)
        points.append(point("fine_tune", f"lr={s.lr:g} epochs={s.epochs}", tuned))
    for q in prune_fractions:
        points.append(point("prune", f"{q:g}", prune(model, q, scope)))
    return points
