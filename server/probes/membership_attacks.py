"""The membership probe's attacks: one class per scenario name (``privacy.membership.attack``).

Each attack says which threat models can run it (what its attacker must see), at which levels
(example or client), how many reference federations it needs, and how it scores the audited
candidates in one round. The probe (:mod:`server.probes.membership`) keeps the running sums of
the per-round scores; an attack only turns one round's view into scores, through the probe's
:class:`Scorer` (the audited examples, their logits and gradients, the reference models).

- ``loss``: −ℓ(w; x) (Yeom, Giacomelli, Fredrikson, Jha, CSF 2018).
- ``lira``: the likelihood ratio of the logit-scaled confidence under the reference models'
  in/out Gaussians, online or offline (Carlini et al., IEEE S&P 2022).
- ``rmia``: the pairwise likelihood ratio against population samples z (Zarifzadeh, Liu,
  Shokri, Nasr, ICML 2024).
- ``gradient_norm``: −‖∇ℓ(w; x)‖, white-box (Nasr, Shokri, Houmansadr, IEEE S&P 2019).
- ``update``: the curious server's cos(−∇ℓ(w_t; x), Δ_t) with the candidate's (home) client's
  update (:func:`~fedsim.membership.update_cosine_score`; at ``level: client`` a data set's
  mean gradient against the best-matching update of the round).

Examples
--------
>>> MEMBERSHIP_ATTACKS.names()
['gradient_norm', 'lira', 'loss', 'rmia', 'update']
>>> [n for n in MEMBERSHIP_ATTACKS.names() if "server" in MEMBERSHIP_ATTACKS.get(n).threat_models]
['gradient_norm', 'update']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedsim.membership import (
    lira_offline,
    lira_online,
    logit_confidence,
    loss_score,
    rmia_scores,
    true_label_probability,
)
from fedsim.registry import Registry
from fedsim.scenario import MembershipConfig
from fedsim.training import single_thread
from server.probes.base import RoundView
from server.probes.membership_targets import MembershipTargets

__all__ = ["MEMBERSHIP_ATTACKS", "MembershipAttack", "RoundScores", "Scorer"]


class Scorer(Protocol):
    """What an attack may ask of the membership probe."""

    @property
    def targets(self) -> MembershipTargets:
        """The audited candidates."""

    @property
    def in_mask(self) -> np.ndarray:
        """``(R, n)``: which audited example each reference federation trained on."""

    def logits(self, weights: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """The model's logits on ``x`` under each of ``weights``."""

    def reference_weights(self, server_round: int) -> torch.Tensor:
        """``(R, d)``: the reference federations' global weights after ``server_round``."""

    def model_at(self, weights: torch.Tensor) -> nn.Module:
        """The run's model holding ``weights``, in evaluation mode."""

    def gradients(self, model: nn.Module, idx: np.ndarray) -> torch.Tensor:
        """``(len(idx), d)`` float64 per-example gradients of the audited examples ``idx``."""


@dataclass(frozen=True)
class RoundScores:
    """One round's scores: ``scores[scored]`` is added to those candidates' running sums.

    Attributes
    ----------
    scores : numpy.ndarray
        ``(K,)`` a score per candidate (read where ``scored``).
    scored : numpy.ndarray
        ``(K,)`` booleans: the candidates this round scored (their count grows by one).
    """

    scores: np.ndarray
    scored: np.ndarray


MEMBERSHIP_ATTACKS: Registry[type[MembershipAttack]] = Registry("membership attack")


class MembershipAttack(ABC):
    """Base class of the membership probe's attacks.

    Subclasses set ``name`` (the scenario name), ``threat_models`` (the
    ``privacy.membership.threat_model`` values that can run it), ``levels`` and, when the
    threat model is narrower than the default, ``needs`` (why, for the error message); they
    implement :meth:`round_scores` and override :meth:`min_references` when they fit
    statistics on reference federations.
    """

    name: ClassVar[str] = "attack"
    threat_models: ClassVar[tuple[str, ...]] = ("outsider", "client")
    levels: ClassVar[tuple[str, ...]] = ("example",)
    needs: ClassVar[str] = ""

    def __init__(self, config: MembershipConfig) -> None:
        self.config = config

    def min_references(self) -> int:
        """The fewest reference federations the attack fits its statistics with (0: none)."""
        return 0

    @abstractmethod
    def round_scores(self, scorer: Scorer, view: RoundView) -> RoundScores | None:
        """Score the candidates on one round's view (``None``: nothing to score this round)."""


class _ModelAttack(MembershipAttack):
    """An attack on the round's global model: every candidate gets a score each round."""

    def round_scores(self, scorer: Scorer, view: RoundView) -> RoundScores:
        scores = self.scores(scorer, view.model, view.round)
        return RoundScores(scores, np.ones(scores.shape, bool))

    @abstractmethod
    def scores(self, scorer: Scorer, weights: torch.Tensor, server_round: int) -> np.ndarray:
        """``(K,)`` each candidate's score on the global model ``weights``."""


@MEMBERSHIP_ATTACKS.register("loss")
class LossAttack(_ModelAttack):
    """s(x) = −ℓ(w; x): members are fitted (Yeom et al., CSF 2018)."""

    name = "loss"

    def scores(self, scorer: Scorer, weights: torch.Tensor, server_round: int) -> np.ndarray:
        targets = scorer.targets
        return loss_score(scorer.logits([weights], targets.x)[0], targets.y)


@MEMBERSHIP_ATTACKS.register("lira")
class LiraAttack(_ModelAttack):
    """LiRA on the logit-scaled confidence φ (Carlini et al., IEEE S&P 2022), online or offline."""

    name = "lira"

    def min_references(self) -> int:
        """One reference per side (in, out) with a global σ, two without; doubled online."""
        per_side = 1 if self.config.fix_variance else 2
        return 2 * per_side if self.config.online else per_side

    def scores(self, scorer: Scorer, weights: torch.Tensor, server_round: int) -> np.ndarray:
        targets, config = scorer.targets, self.config
        logits = scorer.logits([weights], targets.x)[0]
        ref_logits = scorer.logits(list(scorer.reference_weights(server_round)), targets.x)
        phi = logit_confidence(logits, targets.y)
        ref_phi = np.stack([logit_confidence(z, targets.y) for z in ref_logits])
        attack = lira_online if config.online else lira_offline
        return attack(phi, ref_phi, scorer.in_mask, fix_variance=config.fix_variance)


@MEMBERSHIP_ATTACKS.register("rmia")
class RmiaAttack(_ModelAttack):
    """RMIA against population samples z (Zarifzadeh et al., ICML 2024), online or offline."""

    name = "rmia"

    def min_references(self) -> int:
        """Two references online (one in, one out per example), one offline."""
        return 2 if self.config.online else 1

    def scores(self, scorer: Scorer, weights: torch.Tensor, server_round: int) -> np.ndarray:
        targets, config = scorer.targets, self.config
        logits = scorer.logits([weights], targets.x)[0]
        refs = scorer.reference_weights(server_round)
        ref_logits = scorer.logits(list(refs), targets.x)
        z_x, z_y = targets.population
        z_logits = scorer.logits([weights, *refs], z_x)
        return rmia_scores(
            true_label_probability(logits, targets.y),
            np.stack([true_label_probability(z, targets.y) for z in ref_logits]),
            true_label_probability(z_logits[0], z_y),
            np.stack([true_label_probability(z, z_y) for z in z_logits[1:]]),
            gamma=config.rmia_gamma,
            offline_a=None if config.online else config.rmia_offline_a,
        )


@MEMBERSHIP_ATTACKS.register("gradient_norm")
class GradientNormAttack(_ModelAttack):
    """s(x) = −‖∇ℓ(w; x)‖: members' gradients are small (Nasr et al., IEEE S&P 2019)."""

    name = "gradient_norm"
    threat_models = ("client", "server")
    needs = "it needs the model's weights"

    def scores(self, scorer: Scorer, weights: torch.Tensor, server_round: int) -> np.ndarray:
        model = scorer.model_at(weights)
        device = next(model.parameters()).device
        size = scorer.targets.size
        chunks = np.array_split(np.arange(size), max(1, size // 256))
        with single_thread(device):
            norms = [
                torch.linalg.vector_norm(scorer.gradients(model, idx), dim=1) for idx in chunks
            ]
        return -torch.cat(norms).numpy()


@MEMBERSHIP_ATTACKS.register("update")
class UpdateCosineAttack(MembershipAttack):
    """The curious server: cos(−∇ℓ(w_t; x), Δ_t) with the candidate's client's update.

    At example level each candidate is scored in the rounds its (home) client's update
    arrives; at client level every candidate data set is scored each round against the
    update its mean gradient matches best (:func:`~fedsim.membership.client_level_scores`).
    """

    name = "update"
    threat_models = ("server",)
    levels = ("example", "client")
    needs = "only the server sees each client's update"

    def round_scores(self, scorer: Scorer, view: RoundView) -> RoundScores | None:
        if not view.updates:
            return None
        targets = scorer.targets
        model = scorer.model_at(view.before)
        device = next(model.parameters()).device
        updates = {u.client_id: u.update.to(torch.float64) for u in view.updates}
        scores = np.zeros(targets.size)
        scored = np.zeros(targets.size, bool)
        with single_thread(device):
            if self.config.level == "example":
                for client, delta in updates.items():
                    idx = np.flatnonzero(targets.home == client)
                    if idx.size:
                        grads = scorer.gradients(model, idx)
                        cos = F.cosine_similarity(-grads, delta[None, :], dim=1, eps=1e-300)
                        scores[idx], scored[idx] = cos.numpy(), True
                return RoundScores(scores, scored)
            deltas = torch.stack(list(updates.values()))
            for k in range(targets.size):
                mean = scorer.gradients(model, np.flatnonzero(targets.group == k)).mean(0)
                cos = F.cosine_similarity(-mean[None, :], deltas, dim=1, eps=1e-300)
                scores[k], scored[k] = float(cos.max()), True
        return RoundScores(scores, scored)
