"""AutoAttack through the Adversarial Robustness Toolbox (Croce & Hein, ICML 2020).

The reliable figure of an evaluation: a parameter-free ensemble run sample by sample, each
attack only on the samples the earlier ones did not fool. ART 1.20 has no FAB, so the list here
is APGD-CE, APGD-DLR (untargeted) and Square — AutoAttack's "standard" version has targeted
APGD-T and FAB-T in the middle instead; ART's own default list adds DeepFool (a minimum-norm
attack that rarely adds inside a fixed ε) and five restarts of each APGD.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from fedsim.evasion.base import EvasionAttack, check_eps, check_norm
from fedsim.evasion.core import project
from fedsim.evasion.registry import EVASION_ATTACKS
from fedsim.validation import require_int

__all__ = ["AutoAttack"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _seeded_global_rngs(generator: torch.Generator) -> Iterator[None]:
    """Seed NumPy's and torch's global RNGs (which ART draws from) from ``generator``; restore."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


@EVASION_ATTACKS.register("autoattack")
class AutoAttack(EvasionAttack):
    r"""AutoAttack (Croce & Hein, ICML 2020), run by ART's ``AutoAttack``.

    "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks".

    Attacks, in order, each on the samples still classified correctly (a sample counts as fooled
    only if its example is misclassified and within ε):

    1. APGD-CE: auto-step PGD on the cross-entropy, initial step :math:`\eta^{(0)} = 2\varepsilon`,
       ``iterations`` steps, one start;
    2. APGD-DLR: the same on the difference-of-logits ratio
       :math:`-\frac{z_y - \max_{i \ne y} z_i}{z_{\pi_1} - z_{\pi_3}}` (needs ≥ 3 classes);
    3. Square: score-based random search, ``square_queries`` queries, one start.

    Cost (full settings): 2 × 100 gradient steps on every sample, then up to 5,000 forward
    passes on each sample still robust; for a robust model Square dominates. Measured on the
    digits ``cnn`` on one CPU thread (``benchmarks/evasion_preview.py``, 1,000 Square queries):
    5–112 s per 500 samples, against 1–2 s for PGD-20; ART's Square runs its loop in NumPy.

    The outputs are projected once more onto ball ∩ [0, 1] (ART accepts examples up to a 10⁻⁴
    relative excess of ε). ART draws from NumPy's and torch's global RNGs: they are seeded from
    ``generator`` for the call and restored afterwards.

    Parameters
    ----------
    eps : float
        Radius ε ≥ 0 (ε = 0 returns ``x``).
    norm : {"linf", "l2"}
        The ball's norm.
    iterations : int
        APGD iterations (100 in the paper).
    square_queries : int
        Square attack's query budget per sample (5,000 in the paper).
    batch_size : int
        Samples per ART batch.

    Raises
    ------
    InvalidSettingError
        On an invalid ``eps`` or ``norm``, or ``iterations``, ``square_queries`` or
        ``batch_size`` < 1.

    Examples
    --------
    >>> AutoAttack(eps=0.1).label
    'autoattack-linf-0.1'
    """

    name = "autoattack"

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        iterations: int = 100,
        square_queries: int = 5000,
        batch_size: int = 500,
    ) -> None:
        self.eps = check_eps(self.name, eps)
        self.norm = check_norm(self.name, norm)
        self.iterations = require_int(self.name, "iterations", iterations, minimum=1)
        self.square_queries = require_int(self.name, "square_queries", square_queries, minimum=1)
        self.batch_size = require_int(self.name, "batch_size", batch_size, minimum=1)

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Run ART's AutoAttack on ``(x, y)``; the result is on ``x``'s device and dtype."""
        if self.eps == 0.0 or len(x) == 0:
            return x.clone()
        # ART's attack constructors and runs draw from the global RNGs
        with _seeded_global_rngs(generator):
            x_adv = self._run_art(model, x, y)
        return project(torch.from_numpy(x_adv).to(x.device, x.dtype), x, self.eps, self.norm)

    def _run_art(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        # imported here: ART takes seconds to import and only this attack needs it
        from art.attacks.evasion import AutoAttack as ArtAutoAttack
        from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
        from art.estimators.classification import PyTorchClassifier

        with torch.no_grad():
            num_classes = int(model(x[:1]).shape[1])
        classifier = PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=num_classes,
            clip_values=(0.0, 1.0),
            device_type="cpu" if x.device.type == "cpu" else "gpu",
        )
        norm = np.inf if self.norm == "linf" else 2
        common = {"norm": norm, "eps": self.eps, "batch_size": self.batch_size}
        apgd = {"eps_step": 2 * self.eps, "max_iter": self.iterations, "nb_random_init": 1}
        attacks = [
            AutoProjectedGradientDescent(
                classifier, loss_type="cross_entropy", verbose=False, **apgd, **common
            )
        ]
        if num_classes >= 3:
            attacks.append(
                AutoProjectedGradientDescent(
                    classifier, loss_type="difference_logits_ratio", verbose=False, **apgd, **common
                )
            )
        attacks.append(
            SquareAttack(
                classifier, max_iter=self.square_queries, nb_restarts=1, verbose=False, **common
            )
        )
        runner = ArtAutoAttack(
            classifier,
            norm=norm,
            eps=self.eps,
            eps_step=2 * self.eps,
            attacks=attacks,
            batch_size=self.batch_size,
        )
        x_np = x.detach().cpu().numpy().astype(np.float32)
        return runner.generate(x_np, y=y.detach().cpu().numpy())
