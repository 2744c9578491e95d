"""What every evasion attack shares: the call signature, setting checks and the model's state.

An attack is a callable class: ``__init__`` validates its settings (raising
:class:`~fedsim.errors.InvalidSettingError`), ``attack(model, x, y, generator)`` returns
adversarial examples in [0, 1] for a model of [0, 1] pixels
(:func:`~fedsim.evasion.pixel_space.model_in_pixel_space`). While it runs, the model is in eval
mode and its parameters do not require gradients; both are restored afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int, require_real

__all__ = [
    "EvasionAttack",
    "NORMS",
    "attack_mode",
    "check_alpha",
    "check_eps",
    "check_norm",
    "check_steps",
]

logger = logging.getLogger(__name__)

NORMS = ("l2", "linf")


def check_norm(rule: str, norm: Any) -> str:
    """Return ``norm`` if it is ``"linf"`` or ``"l2"``, else raise.

    Examples
    --------
    >>> check_norm("pgd", "l1")
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: pgd needs norm in ('l2', 'linf'), got 'l1'
    """
    if norm not in NORMS:
        raise InvalidSettingError(f"{rule} needs norm in {NORMS}, got {norm!r}")
    return str(norm)


def check_eps(rule: str, eps: Any) -> float:
    """Return ``eps`` as a finite float ≥ 0, else raise.

    Examples
    --------
    >>> check_eps("fgsm", float("inf"))
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: fgsm needs a finite eps >= 0.0, got inf
    """
    return require_real(rule, "eps", eps, low=0.0)


def check_steps(rule: str, steps: Any) -> int:
    """Return ``steps`` as an int ≥ 1, else raise."""
    return require_int(rule, "steps", steps, minimum=1)


def check_alpha(rule: str, alpha: Any) -> float:
    """Return ``alpha`` as a finite float > 0, else raise."""
    return require_real(rule, "alpha", alpha, low=0.0, low_open=True)


@contextlib.contextmanager
def attack_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode with frozen parameters; restore both flags on exit.

    Examples
    --------
    >>> m = nn.Linear(2, 2).train()
    >>> with attack_mode(m):
    ...     (m.training, m.weight.requires_grad)
    (False, False)
    >>> (m.training, m.weight.requires_grad)
    (True, True)
    """
    saved = [
        (
            m,
            {mod: mod.training for mod in m.modules()},
            [(p, p.requires_grad) for p in m.parameters()],
        )
        for m in models
    ]
    try:
        for m, _, params in saved:
            m.eval()
            for p, _ in params:
                p.requires_grad_(False)
        yield
    finally:
        for _, modes, params in saved:
            for mod, training in modes.items():
                mod.training = training
            for p, flag in params:
                p.requires_grad_(flag)


class EvasionAttack(ABC):
    """An evasion attack: ``attack(model, x, y, generator) → x'`` with x' in [0, 1].

    Subclasses set ``name``, validate settings in ``__init__`` and implement :meth:`generate`.
    """

    name: str = "attack"
    eps: float
    norm: str = "linf"
    query_only: bool = False
    """A score-based (query-only) attack: it needs no gradient, so against a purified model it
    attacks f(P(x)) as a black box instead of the classifier alone."""

    @property
    def label(self) -> str:
        """The figure's key: ``"<name>-<norm>-<eps>"`` (FGSM, ℓ∞ only: ``"fgsm-<eps>"``)."""
        return f"{self.name}-{self.norm}-{self.eps:g}"

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Adversarial examples for ``(x, y)`` against ``model`` (pixel space, [0, 1])."""
        if x.dim() < 2 or len(x) != len(y):
            raise InvalidSettingError(
                f"{self.label} needs x of shape (B, ...) and y of shape (B,), "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise InvalidSettingError(
                f"{self.label} attacks pixels in [0, 1], got values in "
                f"[{float(x.min()):.3g}, {float(x.max()):.3g}]; map normalised data back with "
                "to_pixel_space and wrap the model with model_in_pixel_space"
            )
        with attack_mode(model):
            return self.generate(model, x.detach(), y.detach(), generator)

    @abstractmethod
    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The attack proper, called with ``model`` in eval mode and frozen."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
