"""Robust accuracy over several attacks: per attack, and the per-sample worst case."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import EvasionAttack
from fedsim.evasion.calibration import ReliabilityDiagram, reliability_diagram
from fedsim.validation import require_int

__all__ = ["RobustAccuracy", "robust_accuracy"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RobustAccuracy:
    """Clean and robust accuracy of one model on one sample set.

    Attributes
    ----------
    clean : float
        Accuracy on the unperturbed samples.
    per_attack : dict of str to float
        Attack label → fraction of samples classified correctly both clean and attacked.
    worst_case : float
        Fraction of samples classified correctly clean and under every attack.
    robust : Tensor
        Per-sample bool ``(n,)``: the samples counted in ``worst_case``.
    ece, ece_adversarial : float
        ECE on the clean samples, and on each sample's worst example (the first attack, in the
        given order, that fooled it; the last attack's example if none did).
    seconds : dict of str to float
        Wall time per attack.
    reliability, reliability_adversarial : ReliabilityDiagram or None
        The reliability diagrams behind ``ece`` and ``ece_adversarial``.
    """

    clean: float
    per_attack: dict[str, float]
    worst_case: float
    robust: torch.Tensor = field(repr=False)
    ece: float = float("nan")
    ece_adversarial: float = float("nan")
    seconds: dict[str, float] = field(default_factory=dict)
    reliability: ReliabilityDiagram | None = field(default=None, repr=False)
    reliability_adversarial: ReliabilityDiagram | None = field(default=None, repr=False)

    def figures(self) -> dict[str, float]:
        """The ``robust_accuracy`` metric: attack label → accuracy, plus ``worst_case``."""
        return {**self.per_attack, "worst_case": self.worst_case}


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[EvasionAttack],
    generator: torch.Generator,
    batch_size: int | None = None,
    judge: nn.Module | None = None,
) -> RobustAccuracy:
    r"""Per-attack and per-sample worst-case robust accuracy (Carlini et al., 2019, §4).

    With :math:`c_i = [f(x_i) = y_i]` and :math:`a_i^{(k)} = [f(A_k(x_i)) = y_i]`:

    .. math:: \mathrm{acc}_k = \frac{1}{n}\sum_i c_i\, a_i^{(k)}, \qquad
        \mathrm{worst} = \frac{1}{n}\sum_i c_i \prod_k a_i^{(k)}

    so a sample is robust only if it is classified correctly and no attack fools it; the worst
    case is never the minimum of the per-attack means (which overstates robustness whenever
    attacks fool different samples).

    Common random numbers: every attack starts from ``generator``'s state at the call (which
    the call leaves unchanged), so an attack's examples never depend on the attacks before it,
    and two attacks that run the same random draws (non-adaptive PGD, and BPDA + EOT trying
    the non-adaptive example first) return the same examples. Examples are scored by ``judge``
    (default ``model``): with a randomized purifier the probe passes one with fixed draws
    (:class:`~fedsim.evasion.purified.Purified`), so the same example of sample i gets the same
    verdict under every attack, while the attacks themselves query ``model``.

    Parameters
    ----------
    model : nn.Module
        A model of [0, 1] pixels.
    x, y : Tensor
        Samples in [0, 1] and labels.
    attacks : sequence of EvasionAttack
        Attacks with distinct labels (may be empty: then worst case = clean).
    generator : torch.Generator
        Source of every random draw.
    batch_size : int or None
        Attack at most this many samples at a time (all at once when ``None``); batches are
        attacked in order, each drawing from the attack's generator in turn.
    judge : nn.Module or None
        The model the clean and adversarial examples are scored by (default ``model``).

    Raises
    ------
    InvalidSettingError
        If two attacks share a label.

    Examples
    --------
    >>> from fedsim.evasion import FGSM
    >>> lin = nn.Linear(2, 2, bias=False)
    >>> _ = lin.weight.data.copy_(torch.eye(2))
    >>> x, y = torch.tensor([[0.6, 0.4], [0.9, 0.1]]), torch.tensor([0, 0])
    >>> r = robust_accuracy(lin, x, y, [FGSM(0.0), FGSM(0.2)], torch.Generator())
    >>> r.clean, r.figures()
    (1.0, {'fgsm-0': 1.0, 'fgsm-0.2': 0.5, 'worst_case': 0.5})
    """
    labels = [a.label for a in attacks]
    if len(set(labels)) != len(labels):
        raise InvalidSettingError(
            f"robust_accuracy needs attacks with distinct labels, got {labels}; drop the duplicate"
        )
    if batch_size is not None:
        require_int("robust_accuracy", "batch_size", batch_size, minimum=1)
    n = max(len(y), 1)
    judge = model if judge is None else judge
    state = generator.get_state()
    probs_clean = _probs(judge, x)
    correct = probs_clean.argmax(dim=1) == y
    robust = correct.clone()
    worst_probs = probs_clean.clone()
    fooled_before = torch.zeros_like(correct)
    per_attack, seconds = {}, {}
    for attack in attacks:
        start = time.perf_counter()
        draws = torch.Generator(device=generator.device)
        draws.set_state(state)
        x_adv = _attack_in_batches(attack, model, x, y, draws, batch_size)
        seconds[attack.label] = time.perf_counter() - start
        probs = _probs(judge, x_adv)
        ok = correct & (probs.argmax(dim=1) == y)
        per_attack[attack.label] = float(ok.sum()) / n
        take = ~fooled_before
        worst_probs = torch.where(take.unsqueeze(1), probs, worst_probs)
        fooled_before |= probs.argmax(dim=1) != y
        robust &= ok
        logger.info(
            "%s: accuracy %.4f in %.2f s",
            attack.label,
            per_attack[attack.label],
            seconds[attack.label],
        )
    clean_diagram = reliability_diagram(probs_clean, y)
    worst_diagram = reliability_diagram(worst_probs, y)
    return RobustAccuracy(
        clean=float(correct.sum()) / n,
        per_attack=per_attack,
        worst_case=float(robust.sum()) / n,
        robust=robust,
        ece=clean_diagram.ece,
        ece_adversarial=worst_diagram.ece,
        seconds=seconds,
        reliability=clean_diagram,
        reliability_adversarial=worst_diagram,
    )


def _attack_in_batches(
    attack: EvasionAttack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    batch_size: int | None,
) -> torch.Tensor:
    """``attack`` on consecutive batches of at most ``batch_size`` samples, concatenated."""
    if batch_size is None or len(y) <= batch_size:
        return attack(model, x, y, generator)
    parts = [
        attack(model, x[i : i + batch_size], y[i : i + batch_size], generator)
        for i in range(0, len(y), batch_size)
    ]
    return torch.cat(parts)


def _probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax outputs of ``model`` in eval mode (mode restored)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.softmax(model(x), dim=1)
    finally:
        model.train(training)
