"""Shared plumbing of gradient-inversion attacks: the result type, settings checks, the loop.

An inversion attack is a callable object built from validated settings. It receives a model
and the gradient a client computed on it (one tensor per parameter, in ``model.parameters()``
order, of the *mean* cross-entropy over the client's batch), and returns a
:class:`Reconstruction` of the batch. Attacks know nothing of Flower; the server turns an
update into target gradients with :mod:`fedsim.inversion.updates`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.components import Describable
from fedsim.errors import InvalidSettingError
from fedsim.inversion.labels import last_layer_weight_grad, recover_label, recover_labels
from fedsim.validation import require_int, require_real

__all__ = [
    "InversionAttack",
    "Reconstruction",
    "differentiable",
    "parameter_gradients",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconstruction:
    """What an inversion attack returns.

    Attributes
    ----------
    x : torch.Tensor
        Reconstructed inputs, shape ``(B, C, H, W)``, detached, on the CPU, clamped to the
        data range.
    labels : torch.Tensor
        Reconstructed (or recovered, or given) labels, shape ``(B,)``, int64, on the CPU.
    grad_loss : float
        The attack's gradient-matching loss at ``(x, labels)`` for the best restart (squared
        L2 distance for DLG/iDLG, 1 − cosine similarity for Inverting Gradients); ``inf`` if
        every restart diverged.
    """

    x: torch.Tensor
    labels: torch.Tensor
    grad_loss: float


def parameter_gradients(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    x: torch.Tensor,
    soft_labels: torch.Tensor,
    *,
    create_graph: bool,
) -> list[torch.Tensor]:
    r"""Differentiate the mean cross-entropy with respect to ``params``.

    The loss is :math:`\frac1B \sum_b \ell(f(x_b), p_b)` for a batch ``x`` of :math:`B` inputs.
    ``soft_labels`` are class probabilities of shape ``(B, num_classes)`` (one-hot rows give the
    usual hard-label loss). With ``create_graph`` the result can be differentiated again with
    respect to ``x`` and the labels, which is what gradient matching needs. Parameters that do
    not influence the loss get zero gradients.
    """
    loss = F.cross_entropy(model(x), soft_labels)
    grads = torch.autograd.grad(loss, list(params), create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


@contextmanager
def differentiable(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """Enable autograd and ``requires_grad`` on ``params``, restoring both afterwards."""
    flags = [p.requires_grad for p in params]
    try:
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


class InversionAttack(Describable):
    r"""Base class of gradient-inversion attacks.

    Subclasses validate their own settings in ``__init__`` (calling ``super().__init__`` for the
    common ones), define :meth:`distance` (the gradient-matching loss) and :meth:`optimise`
    (one restart). This class checks the inputs, resolves labels, draws each restart's dummy
    input :math:`x_0 \sim \mathcal N(0, I)` and dummy label logits from a
    ``torch.Generator`` seeded with ``seed`` (on the CPU, so every device starts from the same
    numbers), keeps the restart with the lowest gradient loss, and clamps the result to the
    data range. Compute runs on the device and in the dtype of the model's parameters.

    Parameters
    ----------
    iterations : int
        Optimiser iterations per restart (≥ 1).
    restarts : int
        Independent trials from fresh dummy inputs; the best by gradient loss is kept (≥ 1).
    lr : float
        Optimiser step size (> 0).
    seed : int
        Seed of the dummy initialisation (≥ 0).
    """

    name: ClassVar[str] = "inversion attack"
    #: Whether labels are recovered analytically (iDLG) when not given, rather than learnt.
    recovers_labels: ClassVar[bool] = True

    def __init__(self, *, iterations: int, restarts: int, lr: float, seed: int) -> None:
        self.iterations = require_int(self.name, "iterations", iterations, minimum=1)
        self.restarts = require_int(self.name, "restarts", restarts, minimum=1)
        self.lr = require_real(self.name, "lr", lr, low=0, low_open=True)
        self.seed = require_int(self.name, "seed", seed, minimum=0)

    def distance(
        self, grads: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Return the gradient-matching loss between dummy and target gradients (a scalar)."""
        raise NotImplementedError

    def dummy_gradients(
        self,
        model: nn.Module,
        params: Sequence[torch.Tensor],
        x: torch.Tensor,
        soft_labels: torch.Tensor,
        *,
        create_graph: bool,
    ) -> list[torch.Tensor]:
        """What the dummy batch would show the attacker, compared with the target gradients.

        The mean cross-entropy gradient (:func:`parameter_gradients`); an attack that simulates
        the client's local training (FedAvg) overrides it.
        """
        return parameter_gradients(model, params, x, soft_labels, create_graph=create_graph)

    def optimise(
        self,
        model: nn.Module,
        params: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        x0: torch.Tensor,
        logits0: torch.Tensor,
        labels: torch.Tensor | None,
        data_range: tuple[float, float],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one restart from ``x0``; return the dummy input and its soft labels ``(B, K)``.

        ``labels`` are fixed labels, or ``None`` when the attack learns soft labels
        ``softmax(logits)`` starting from ``logits0``.
        """
        raise NotImplementedError

    def __call__(
        self,
        model: nn.Module,
        target_grads: Sequence[torch.Tensor],
        *,
        input_shape: tuple[int, int, int],
        num_classes: int,
        batch_size: int = 1,
        data_range: tuple[float, float] = (0.0, 1.0),
        label: torch.Tensor | None = None,
        ignore: Collection[int] = (),
    ) -> Reconstruction:
        """Reconstruct the batch whose mean cross-entropy gradient is ``target_grads``.

        Parameters
        ----------
        model : torch.nn.Module
            The model at the weights the gradient was taken at. It is not modified (its
            parameters' ``requires_grad`` flags are restored).
        target_grads : sequence of torch.Tensor
            One gradient per parameter, in ``model.parameters()`` order.
        input_shape : tuple[int, int, int]
            ``(channels, height, width)`` of one sample.
        num_classes : int
            Number of classes (logits) of the model.
        batch_size : int
            Number of samples to reconstruct.
        data_range : tuple[float, float]
            ``(lo, hi)`` of valid inputs; the reconstruction is clamped to it.
        label : torch.Tensor or None
            Known labels, shape ``(batch_size,)``; ``None`` to recover (iDLG, Inverting
            Gradients) or learn (DLG) them.
        ignore : collection of int
            Indices (in ``model.parameters()`` order) of parameters whose target gradient is
            unknown: left out of the gradient matching (labels are still recovered from the
            last layer's weight gradient). A model-inconsistency attack leaves out what the
            other clients' updates still move.

        Returns
        -------
        Reconstruction
            The best restart's inputs, labels and gradient loss.

        Raises
        ------
        InvalidSettingError
            The gradients do not match the model's parameters, or an argument is invalid.
        """
        params = list(model.parameters())
        if not params:
            raise InvalidSettingError(f"{self.name} needs a model with parameters")
        device, dtype = params[0].device, params[0].dtype
        shape = _check_shape(self.name, input_shape)
        num_classes = require_int(self.name, "num_classes", num_classes, minimum=2)
        batch_size = require_int(self.name, "batch_size", batch_size, minimum=1)
        lo, hi = _check_range(self.name, data_range)
        targets = _check_targets(self.name, params, target_grads, device, dtype)
        labels = self._labels(
            model, targets, num_classes, batch_size, label, device, shape=shape, data_range=(lo, hi)
        )
        kept = [i for i in range(len(params)) if i not in set(ignore)]
        if not kept:
            raise InvalidSettingError(f"{self.name}: every parameter is ignored")
        params, targets = [params[i] for i in kept], [targets[i] for i in kept]
        generator = torch.Generator().manual_seed(self.seed)
        trials: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        with differentiable(params):
            for restart in range(self.restarts):
                x0 = torch.randn((batch_size, *shape), generator=generator, dtype=dtype)
                logits0 = torch.randn((batch_size, num_classes), generator=generator, dtype=dtype)
                x, soft = self.optimise(
                    model, params, targets, x0.to(device), logits0.to(device), labels, (lo, hi)
                )
                x = x.detach().clamp(lo, hi)
                soft = soft.detach()
                grads = self.dummy_gradients(model, params, x, soft, create_graph=False)
                loss = float(self.distance(grads, targets))
                if not math.isfinite(loss):
                    loss = math.inf
                logger.debug("%s restart %d: gradient loss %.3e", self.name, restart, loss)
                trials.append((x, soft.argmax(dim=1), loss))
        best = min(trials, key=lambda trial: trial[2])  # the first of equals
        return Reconstruction(x=best[0].cpu(), labels=best[1].cpu(), grad_loss=best[2])

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
        """Given labels (checked), recovered labels, or ``None`` for attacks that learn them.

        ``shape`` (one sample's) and ``data_range`` are for attacks that probe the model to
        recover labels; the gradient-only recovery here does not read them.
        """
        if label is not None:
            labels = torch.as_tensor(label).reshape(-1).to(device=device, dtype=torch.int64)
            if labels.numel() != batch_size or bool(
                (labels < 0).any() | (labels >= num_classes).any()
            ):
                raise InvalidSettingError(
                    f"{self.name} needs {batch_size} labels in [0, {num_classes}), got "
                    f"{torch.as_tensor(label).tolist()!r}"
                )
            return labels
        if not self.recovers_labels:
            return None
        last = last_layer_weight_grad(model, targets, num_classes)
        if batch_size == 1:
            return torch.tensor([recover_label(last)], device=device)
        return recover_labels(last, batch_size).to(device)


def _check_shape(attack: str, input_shape: Any) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape
    ):
        raise InvalidSettingError(
            f"{attack} needs input_shape (channels, height, width) of positive ints, "
            f"got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]


def _check_range(attack: str, data_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError) as e:
        raise InvalidSettingError(f"{attack} needs data_range (lo, hi), got {data_range!r}") from e
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidSettingError(f"{attack} needs a finite data_range lo < hi, got {data_range!r}")
    return lo, hi


def _check_targets(
    attack: str,
    params: Sequence[torch.Tensor],
    target_grads: Sequence[torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    targets = list(target_grads)
    if len(targets) != len(params):
        raise InvalidSettingError(
            f"{attack} needs one target gradient per model parameter ({len(params)}), "
            f"got {len(targets)}"
        )
    for i, (p, g) in enumerate(zip(params, targets, strict=True)):
        if tuple(g.shape) != tuple(p.shape):
            raise InvalidSettingError(
                f"{attack}: target gradient {i} has shape {tuple(g.shape)}, the parameter "
                f"{tuple(p.shape)}; pass gradients in model.parameters() order"
            )
    targets = [g.detach().to(device=device, dtype=dtype) for g in targets]
    if not all(bool(torch.isfinite(g).all()) for g in targets):
        raise InvalidSettingError(f"{attack}: target gradients contain NaN/Inf")
    return targets
