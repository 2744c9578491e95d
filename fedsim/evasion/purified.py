r"""A classifier behind a purifier, f(P(x)), and attacks crafted on f alone but judged on f∘P.

With a test-time purifier P (:mod:`fedsim.purification`) the defended model is
:math:`x \mapsto f(P(x))` (:class:`Purified`). A *non-adaptive* attack crafts its examples on the
classifier f alone, ignoring P, and the examples are then evaluated through P; an *adaptive*
attack (:class:`~fedsim.evasion.bpda.BPDAEOT`) crafts through P itself. :class:`OnClassifier`
runs either kind on f when it is handed the defended model, so
:func:`~fedsim.evasion.evaluation.robust_accuracy` on :class:`Purified` scores all of them on
f∘P, with one per-sample worst case over all.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import EvasionAttack
from fedsim.purification.base import Purifier

__all__ = ["OnClassifier", "Purified"]


class Purified(nn.Module):
    r"""The defended model :math:`f(P(x))` on [0, 1] pixels (no gradient trick: see BPDA).

    With ``fixed_draws`` every call starts the purifier's draws from ``generator``'s state at
    construction (common random numbers): the draw applied to the i-th input of a batch of a
    given shape is the same in every call, so two attacks whose examples for sample i are
    equal get the same verdict, whatever the order they are scored in. That is the scorer the
    robustness probe evaluates every attack's examples with; it is never handed to an attack,
    which queries a purifier drawing afresh (``fixed_draws=False``, the default: each call
    advances ``generator``).

    Parameters
    ----------
    model : nn.Module
        The classifier f, a model of [0, 1] pixels.
    purifier : Purifier
        P.
    generator : torch.Generator or None
        A randomized purifier's draws.
    fixed_draws : bool
        Restart the draws from the same state on every call (needs ``generator``).

    Examples
    --------
    >>> from fedsim.purification import BitDepth
    >>> lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    >>> _ = lin[1].weight.data.copy_(torch.tensor([[2.0, -1.0]]))
    >>> Purified(lin, BitDepth(bits=1))(torch.tensor([[[[0.2, 0.7]]]])).item()  # 2·0 − 1·1
    -1.0
    >>> class Noise(BitDepth):
    ...     randomized = True
    ...     def purify(self, x, generator):
    ...         return x + torch.rand(x.shape, generator=generator)
    >>> fixed = Purified(lin, Noise(1), torch.Generator().manual_seed(0), fixed_draws=True)
    >>> x = torch.zeros(1, 1, 1, 2)
    >>> torch.equal(fixed(x), fixed(x))
    True
    """

    def __init__(
        self,
        model: nn.Module,
        purifier: Purifier,
        generator: torch.Generator | None = None,
        fixed_draws: bool = False,
    ) -> None:
        super().__init__()
        if fixed_draws and generator is None:
            raise InvalidSettingError("Purified with fixed_draws needs a generator to fix")
        self.model = model
        self.purifier = purifier
        self.generator = generator
        self._state = generator.get_state() if fixed_draws and generator is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the purified inputs."""
        generator = self.generator
        if self._state is not None and generator is not None:
            generator = torch.Generator(device=generator.device)
            generator.set_state(self._state)
        return self.model(self.purifier(x, generator))


class OnClassifier(EvasionAttack):
    """``attack`` crafted on the classifier f: handed ``Purified(f, P)`` it attacks ``f``.

    Any other model is attacked as is. The label is the wrapped attack's.

    Examples
    --------
    >>> from fedsim.evasion import FGSM
    >>> from fedsim.purification import BitDepth
    >>> lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    >>> _ = lin[1].weight.data.copy_(torch.eye(2))
    >>> x, y = torch.tensor([[[[0.6, 0.4]]]]), torch.tensor([0])
    >>> attack = OnClassifier(FGSM(eps=0.2))
    >>> attack.label
    'fgsm-0.2'
    >>> x_adv = attack(Purified(lin, BitDepth(1)), x, y, torch.Generator())
    >>> [round(v, 4) for v in x_adv.flatten().tolist()]
    [0.4, 0.6]
    """

    def __init__(self, attack: EvasionAttack) -> None:
        self.attack = attack
        self.name, self.eps, self.norm = attack.name, attack.eps, attack.norm

    @property
    def label(self) -> str:
        """The wrapped attack's label."""
        return self.attack.label

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The wrapped attack's examples against f."""
        classifier = model.model if isinstance(model, Purified) else model
        return self.attack(classifier, x, y, generator)
