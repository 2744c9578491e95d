r"""A shared backbone with one linear head per task (multi-task federations, ``data.tasks``).

The backbone is a registry model (``model.name``) without its last linear layer; task
:math:`t` reads the backbone's features :math:`h(x) \in \mathbb{R}^m` through its own head,
:math:`f_t(x) = W_t h(x) + b_t` with :math:`W_t \in \mathbb{R}^{K_t \times m}` (hard
parameter sharing, Caruana, Machine Learning 1997). ``model(x)`` is the mapping task →
logits; :meth:`MultiTaskModel.as_single_task` is one task's classifier as an ``nn.Module``
whose parameters are *all* the multi-task model's, in the same order, so its flat parameter
vector (:func:`fedsim.params.flat_params`) is the multi-task model's and every single-task
part of fedsim (evaluation, probes, attacks) runs on it unchanged.

The flat vector is the backbone's parameters, then each head's (weight, bias) in task
order; :meth:`MultiTaskModel.head_slices` says where each head lies.

Example
-------
>>> torch.manual_seed(0) is not None
True
>>> model = MultiTaskModel.from_registry("mlp", (1, 4, 4), {"digit": 10, "parity": 2}, hidden=8)
>>> {t: tuple(v.shape) for t, v in model(torch.zeros(3, 1, 4, 4)).items()}
{'digit': (3, 10), 'parity': (3, 2)}
>>> model.head_slices()
{'digit': slice(208, 298, None), 'parity': slice(298, 316, None)}
>>> view = model.as_single_task("parity")
>>> tuple(view(torch.zeros(3, 1, 4, 4)).shape), sum(p.numel() for p in view.parameters())
((3, 2), 316)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models.registry import MODELS

__all__ = ["MultiTaskModel", "TaskView", "head_mask", "last_linear"]


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The dotted name and module of ``model``'s last registered ``nn.Linear`` (its head).

    Raises
    ------
    InvalidSettingError
        ``model`` has no linear layer.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise InvalidSettingError(f"{type(model).__name__} has no linear head to split off")
    return found[-1]


class MultiTaskModel(nn.Module):
    """A backbone :math:`h` and one linear head per task.

    Parameters
    ----------
    backbone : nn.Module
        Maps a batch of inputs to features of shape ``(batch, feature_dim)``.
    feature_dim : int
        :math:`m`, the feature width.
    task_classes : Mapping[str, int]
        Each task's class count :math:`K_t`, in task order (the first task is the one a
        single-task view of the model reads by default).
    """

    def __init__(
        self, backbone: nn.Module, feature_dim: int, task_classes: Mapping[str, int]
    ) -> None:
        super().__init__()
        if not task_classes:
            raise InvalidSettingError("a multi-task model needs at least one task")
        for task, classes in task_classes.items():
            if classes < 2:
                raise InvalidSettingError(f"task {task!r} needs ≥ 2 classes, got {classes}")
        self.backbone = backbone
        self.heads = nn.ModuleDict({t: nn.Linear(feature_dim, k) for t, k in task_classes.items()})

    @classmethod
    def from_registry(
        cls,
        name: str,
        input_shape: tuple[int, int, int],
        task_classes: Mapping[str, int],
        **params: Any,
    ) -> MultiTaskModel:
        """Registry model ``name`` as the backbone (its last linear layer removed), new heads.

        Raises
        ------
        InvalidSettingError
            The model's last linear layer is not its output layer (the remaining body does
            not produce that layer's input features).
        """
        body = MODELS.get(name)(input_shape, next(iter(task_classes.values())), **params)
        path, linear = last_linear(body)
        parent_name, _, child = path.rpartition(".")
        setattr(body.get_submodule(parent_name) if parent_name else body, child, nn.Identity())
        try:
            with torch.no_grad():
                shape = tuple(body(torch.zeros(1, *input_shape)).shape)
        except RuntimeError as e:  # the body's layers no longer fit together
            shape = (str(e).splitlines()[0],)
        if shape != (1, linear.in_features):
            raise InvalidSettingError(
                f"model {name!r}: its last linear layer {path!r} is not its output layer, so it "
                f"cannot serve as a multi-task backbone (without it: {shape})"
            )
        return cls(body, linear.in_features, task_classes)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names, in order."""
        return tuple(self.heads.keys())

    def head(self, task: str) -> nn.Linear:
        """Task ``task``'s head."""
        if task not in self.heads:
            raise KeyError(f"no task {task!r}; tasks: {', '.join(self.tasks)}")
        return self.heads[task]  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each task's logits, ``(batch, K_t)``, computed on one pass of the backbone."""
        features = self.backbone(x)
        return {task: head(features) for task, head in self.heads.items()}

    def logits(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Task ``task``'s logits (the backbone and that head only)."""
        return self.head(task)(self.backbone(x))

    def as_single_task(self, task: str) -> TaskView:
        """Task ``task``'s classifier, sharing this model's parameters (see the module doc)."""
        self.head(task)
        return TaskView(self, task)

    def head_slices(self) -> dict[str, slice]:
        """Where each head's parameters lie in the flat parameter vector."""
        start = sum(p.numel() for p in self.backbone.parameters())
        slices = {}
        for task, head in self.heads.items():
            size = sum(p.numel() for p in head.parameters())
            slices[task] = slice(start, start + size)
            start += size
        return slices


class TaskView(nn.Module):
    """One task of a :class:`MultiTaskModel` as a plain classifier: ``view(x)`` → logits.

    Its parameters are the whole multi-task model's (the other heads get no gradient), so
    loading a flat vector into it loads the multi-task model.
    """

    def __init__(self, multitask: MultiTaskModel, task: str) -> None:
        super().__init__()
        self.multitask = multitask
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the view's task, ``(batch, K_task)``."""
        return self.multitask.logits(x, self.task)


def head_mask(model: nn.Module) -> torch.Tensor:
    """Boolean mask over the flat parameter vector: the head(s) personalization keeps local.

    Every head of a :class:`MultiTaskModel` (or of the one a :class:`TaskView` reads), else
    the model's last linear layer (:func:`last_linear`).

    Examples
    --------
    The first layer has 2·3 + 3 = 9 parameters, the head 3·2 + 2 = 8:

    >>> mask = head_mask(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)))
    >>> mask.nonzero().flatten().tolist()
    [9, 10, 11, 12, 13, 14, 15, 16]
    """
    inner = model.multitask if isinstance(model, TaskView) else model
    head_ids = set()
    if isinstance(inner, MultiTaskModel):
        head_ids = {id(p) for p in inner.heads.parameters()}
    else:
        head_ids = {id(p) for p in last_linear(model)[1].parameters()}
    parts = [
        torch.full((p.numel(),), id(p) in head_ids, dtype=torch.bool) for p in model.parameters()
    ]
    return torch.cat(parts)
