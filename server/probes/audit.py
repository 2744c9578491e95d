"""The empirical privacy audit (model → data): a lower bound on ε beside the accounted ε.

Configured by ``privacy.audit``. Before training, m canaries are drawn and each is inserted
with probability ½ (:mod:`fedsim.audit.canaries`); in each audited round (default: the last)
the probe scores every canary on the global model, which is all its attacker sees (threat
model ``global_model``):

- **canary examples** (``kind: examples``; local DP-SGD, or no DP): score = −loss of the
  canary (its image and wrong label) under the global model (Yeom et al., CSF 2018); the
  inserted canaries sit in their owners' training data on every runtime.
- **canary clients** (``kind: clients``; central DP-FedAvg): each inserted canary client sends
  a random unit direction cⱼ in every round it takes part in (every round, or with probability
  m/N under Poisson sampling); the server adds it, at the clip norm, to the DP-FedAvg sum
  before the noise (:meth:`inserted_updates`). Score = cos(w_t − w_0, cⱼ). Besides the bound,
  the one-shot estimate ``epsilon_estimate`` fits a Gaussian to the inserted canaries' cosines
  against N(0, 1/d) (Andrew et al., ICLR 2024); it is an estimate, not a bound.
- **gradient canaries** (``canary: gradient``, white-box; :mod:`fedsim.audit.gradient`): Dirac
  gradients C·e_i inserted into the owners' DP-SGD steps (local DP) or as canary clients
  e_i into DP-FedAvg's sum (central DP). Under local DP the attacker is the server, who sees
  each client's update (threat model ``update``, refused under secure aggregation): the score
  adds up −(Δ[i] − Δ̄[i])·B/(ηC) over every round up to the audited one (so the probe reads
  every round, and writes figures in the audited ones), where Δ̄ is the mean of the round's
  other updates: they hold no canary at i, so they estimate the data's own drift of
  coordinate i, which the score subtracts; under central DP it is the coordinate
  (w_t − w_0)[i] of the global model's change, the noisy sums added up. The one-shot estimate
  ``epsilon_estimate`` then fits Gaussians to the inserted and to the held-out canaries' scores
  (:func:`~fedsim.audit.one_shot.two_sample_epsilon`).

The bound is the one-run audit (Steinke, Nasr, Jagielski, NeurIPS 2023) over the (k₊, k₋)
grid ``privacy.audit.guesses`` fixed in the scenario, Bonferroni-corrected, at the scenario's δ
(δ = 0 without DP). The audit **violates** the accounting when ε_lb exceeds the accounted ε
(``epsilon`` of local DP, ``epsilon_central`` of central DP), or when one of the measured canary
tests — "in" for the k₊ highest scores, or "out" for the k₋ lowest, one (FPR, TPR) point per
grid entry — lies outside the (ε, δ)-DP region beyond its joint Clopper–Pearson box
(:func:`~fedsim.membership.intervals.dp_consistent`, Bonferroni over the points). A violation
is logged as a WARNING and reported as ``audit_violation: true`` in ``summary.json``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.audit import (
    audit_kind,
    canary_cosines,
    canary_direction,
    canary_participates,
    one_run_audit_scan,
    one_shot_epsilon,
)
from fedsim.audit.canaries import inclusion_bits
from fedsim.audit.one_shot import two_sample_epsilon
from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.federation import Federation
from fedsim.membership.intervals import dp_consistent
from fedsim.membership.scores import loss_score
from fedsim.params import load_flat_params
from fedsim.training import single_thread
from server.probes.base import PROBES, InsertedUpdates, Probe, RoundView, check_rounds
from server.server_data import ServerData

__all__ = ["AuditProbe", "canary_points", "guess_grid"]

log = logging.getLogger(__name__)

CACHED_DIRECTIONS = 2**24  # keep the canary directions in memory up to this many numbers
SCORE_BATCH = 1024


def guess_grid(fractions: list[tuple[float, float]], canaries: int) -> list[tuple[int, int]]:
    """The (k₊, k₋) counts of ``privacy.audit.guesses``: fractions of m, each non-zero one ≥ 1.

    Examples
    --------
    >>> guess_grid([(0.01, 0.0), (0.1, 0.1), (0.011, 0.0)], 100)
    [(1, 0), (10, 10)]
    """
    grid: list[tuple[int, int]] = []
    for pos, neg in fractions:
        k = (_count(pos, canaries), _count(neg, canaries))
        if sum(k) > canaries:
            k = (k[0], canaries - k[0])
        if k not in grid:
            grid.append(k)
    return grid


def _count(fraction: float, m: int) -> int:
    return 0 if fraction == 0 else max(1, round(fraction * m))


def canary_points(
    scores: np.ndarray, included: np.ndarray, grid: list[tuple[int, int]]
) -> list[dict[str, Any]]:
    """The measured (FPR, TPR) of each canary test of the grid.

    For k₊ > 0 the test says "in" for the k₊ highest scores; for k₋ > 0 it says "out" for the
    k₋ lowest (and "in" for the rest). Ties are broken by canary index, as in the audit.

    Examples
    --------
    >>> pts = canary_points(np.arange(4.0), np.array([0, 1, 0, 1], bool), [(1, 1)])
    >>> [(p["test"], p["fpr"], p["tpr"]) for p in pts]
    [('top 1', 0.0, 0.5), ('bottom 1', 0.5, 1.0)]
    """
    order = np.argsort(-scores, kind="stable")
    n_in, n_out = int(included.sum()), int((~included).sum())
    points = []
    for k in sorted({k for k, _ in grid if k > 0}):
        chosen = included[order[:k]]
        points.append(_point(f"top {k}", int(chosen.sum()), int((~chosen).sum()), n_in, n_out))
    for k in sorted({k for _, k in grid if k > 0}):
        rejected = included[order[len(order) - k :]]
        tp, fp = n_in - int(rejected.sum()), n_out - int((~rejected).sum())
        points.append(_point(f"bottom {k}", tp, fp, n_in, n_out))
    return points


def _point(test: str, tp: int, fp: int, n_in: int, n_out: int) -> dict[str, Any]:
    return {
        "test": test,
        "tpr": tp / n_in if n_in else math.nan,
        "fpr": fp / n_out if n_out else math.nan,
        "n_pos": n_in,
        "n_neg": n_out,
    }


@PROBES.register("audit")
class AuditProbe(Probe):
    """The run's empirical DP audit (see the module docstring).

    Parameters
    ----------
    fed : Federation
        The run's data (with the canary examples), model factory and scenario.
    out_dir : Path, optional
        Unused (the audit writes no pictures).
    """

    name = "audit"
    direction = "model→data"

    def __init__(self, fed: Federation, out_dir: Path | None = None) -> None:
        config, kind = fed.scenario.privacy.audit, audit_kind(fed.scenario)
        if config is None or kind is None:
            raise ValueError("the scenario has no privacy.audit block")
        self.fed, self.config, self.kind = fed, config, kind
        self.included = inclusion_bits(fed.scenario, config)
        self.grid = guess_grid(config.guesses, config.canaries)
        self.initial = fed.initial_weights().to(torch.float64)
        self.dim = int(self.initial.numel())
        self._directions: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.gradient = fed.gradient_canaries
        # local DP gradient canaries: each canary's score added up over the rounds so far
        self.accumulated = np.zeros(config.canaries)

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> AuditProbe | None:
        """The probe ``privacy.audit`` asks for (``None`` without that block).

        Raises
        ------
        ScenarioError
            Rounds past the run's end; canary clients without central DP or with another rule
            than plain FedAvg; canary examples without an honest client to hold them.
        """
        scenario, config = fed.scenario, fed.scenario.privacy.audit
        if config is None:
            return None
        check_rounds("privacy.audit.rounds", config.rounds, scenario.rounds)
        kind = audit_kind(scenario)
        if kind == "clients":
            if scenario.privacy.central_dp is None:
                raise ScenarioError(
                    "privacy.audit.kind",
                    config.kind,
                    "examples (or auto): canary clients are inserted into central DP's sum; "
                    "add privacy.central_dp to audit client-level DP",
                )
            if scenario.defense.aggregator != "fedavg" or scenario.defense.pre:
                raise ScenarioError(
                    "privacy.audit.kind",
                    config.kind,
                    "examples: canary clients need the DP-FedAvg sum (defense.aggregator: fedavg "
                    f"without pre stages), not {scenario.defense.aggregator!r}",
                )
        elif config.canary == "gradient":
            if scenario.privacy.local_dp is None:
                raise ScenarioError(
                    "privacy.audit.canary",
                    config.canary,
                    "mislabeled or noise: gradient canaries enter DP-SGD's steps (add "
                    "privacy.local_dp) or DP-FedAvg's sum (privacy.central_dp, kind: clients)",
                )
            if fed.gradient_canaries is None:
                raise ScenarioError("privacy.audit", config.model_dump(), "an honest client")
        elif fed.canaries is None:
            raise ScenarioError(
                "privacy.audit", config.model_dump(), "an honest client to hold the canaries"
            )
        return cls(fed, out_dir)

    @property
    def _reads_updates(self) -> bool:
        """Local DP gradient canaries: scored on every round's client updates."""
        return self.gradient is not None and self.kind == "examples"

    @property
    def threat_model(self) -> str:
        """``global_model`` (white-box), or ``update`` for local DP's gradient canaries."""
        return "update" if self._reads_updates else "global_model"

    @property
    def audited(self) -> list[int]:
        """The audited rounds (``privacy.audit.rounds``; default the last)."""
        return list(self.config.rounds or [self.fed.scenario.rounds])

    @property
    def rounds(self) -> list[int]:
        """The rounds it reads: the audited ones, and every earlier one for local DP's canaries.

        Local DP's gradient canaries add up the client updates of every round.
        """
        if self._reads_updates:
            return list(range(1, max(self.audited) + 1))
        return self.audited

    def describe(self) -> dict[str, Any]:
        """The probe's identity, with the canary kind and count."""
        return {
            **super().describe(),
            "rounds": sorted(self.audited),
            "canary": self.config.canary,
            "kind": self.kind,
            "canaries": self.config.canaries,
            "inserted": int(self.included.sum()),
        }

    # canary clients ---------------------------------------------------------------------

    def directions(self, indices: np.ndarray) -> torch.Tensor:
        """``(len(indices), d)`` the canary clients' unit directions."""
        if self.config.canaries * self.dim <= CACHED_DIRECTIONS:
            if self._directions is None:
                self._directions = self._draw(np.arange(self.config.canaries))
            return self._directions[torch.from_numpy(indices)]
        return self._draw(indices)

    def _draw(self, indices: np.ndarray) -> torch.Tensor:
        if len(indices) == 0:
            return torch.zeros(0, self.dim, dtype=torch.float64)
        if self.gradient is not None:  # Dirac canary clients: e_i
            out = torch.zeros(len(indices), self.dim, dtype=torch.float64)
            coords = torch.from_numpy(self.gradient.coordinates[indices])
            out[torch.arange(len(indices)), coords] = 1.0
            return out
        return torch.stack([canary_direction(self.fed.scenario, int(j), self.dim) for j in indices])

    def inserted_updates(self, server_round: int, dim: int) -> InsertedUpdates | None:
        """The inserted canary clients taking part in ``server_round``: their directions' sum."""
        if self.kind != "clients":
            return None
        if dim != self.dim:
            raise InvalidSettingError(f"audit canaries have d={self.dim}, the model has d={dim}")
        taking_part = self.included & canary_participates(
            self.fed.scenario, server_round, self.config.canaries
        )
        chosen = np.flatnonzero(taking_part)
        total = torch.zeros(self.dim, dtype=torch.float64)
        for start in range(0, len(chosen), 256):
            total += self.directions(chosen[start : start + 256]).sum(dim=0)
        return InsertedUpdates(total, len(chosen))

    # scores -----------------------------------------------------------------------------

    def scores(self, weights: torch.Tensor) -> np.ndarray:
        """``(m,)`` each canary's score on the global model ``weights`` (higher: more likely in)."""
        if self.gradient is not None:
            if self._reads_updates:
                return self.accumulated.copy()
            delta = weights.to(torch.float64) - self.initial
            return delta[torch.from_numpy(self.gradient.coordinates)].numpy()
        if self.kind == "clients":
            delta = weights.to(torch.float64) - self.initial
            everyone = np.arange(self.config.canaries)
            return np.concatenate(
                [
                    canary_cosines(delta, self.directions(everyone[i : i + 256]))
                    for i in range(0, len(everyone), 256)
                ]
            )
        canaries = self.fed.canaries
        assert canaries is not None  # from_scenario checked it
        model = self.fed.model("audit")
        load_flat_params(model, weights)
        device = next(model.parameters()).device
        model.eval()
        logits = []
        with torch.no_grad(), single_thread(device):
            for i in range(0, len(canaries.y), SCORE_BATCH):
                logits.append(model(canaries.x[i : i + SCORE_BATCH].to(device)).double().cpu())
        return loss_score(torch.cat(logits), canaries.y)

    def accounted(self, view: RoundView) -> tuple[float | None, float]:
        """The accounted (ε, δ) the canaries are covered by; (None, 0) without DP."""
        acc = view.accounted
        privacy = self.fed.scenario.privacy
        if self.kind == "clients" or privacy.local_dp is None:
            key = "epsilon_central" if "epsilon_central" in acc else "epsilon"
            delta_key = "delta_central" if key == "epsilon_central" else "delta"
        else:
            key, delta_key = "epsilon", "delta"
        if acc.get(key) is None:
            return None, 0.0
        return float(acc[key]), float(acc[delta_key])

    def accumulate(self, view: RoundView) -> None:
        """Add the round's client updates' gradient-canary scores −Δ[i]·B/(ηC) (local DP)."""
        canaries, clients = self.gradient, self.fed.scenario.clients
        if canaries is None:
            return
        unit = clients.batch_size / (clients.lr * canaries.norm)
        coords = torch.from_numpy(canaries.coordinates)
        moved = {
            u.client_id: np.nan_to_num(u.update.to(torch.float64).cpu()[coords].numpy())
            for u in view.updates
        }
        for client, own in moved.items():
            mine = canaries.owners == client
            if not mine.any():
                continue
            others = [m for c, m in moved.items() if c != client]
            drift = np.mean(others, axis=0)[mine] if others else 0.0
            scores = -unit * (own[mine] - drift)
            self.accumulated[mine] += np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Score the canaries on the round's global model; bound ε; check the accounting."""
        started = time.perf_counter()
        if self._reads_updates:
            self.accumulate(view)
            if view.round not in self.audited:
                return {}
        scores = self.scores(view.model)
        epsilon, delta = self.accounted(view)
        confidence = self.config.confidence
        audit = one_run_audit_scan(
            scores, self.included, self.grid, confidence=confidence, delta=delta
        )
        points = canary_points(scores, self.included, self.grid)
        point_confidence = 1.0 - (1.0 - confidence) / max(1, len(points))
        inconsistent = []
        for point in points:
            if epsilon is None or not math.isfinite(epsilon) or not point["n_pos"] * point["n_neg"]:
                point["dp_consistent"] = None
                continue
            point["dp_consistent"] = dp_consistent(
                point["fpr"],
                point["tpr"],
                point["n_neg"],
                point["n_pos"],
                epsilon,
                delta,
                point_confidence,
            )
            if not point["dp_consistent"]:
                inconsistent.append(point["test"])
        bound = audit.epsilon_lower_bound
        over = epsilon is not None and bound > epsilon
        violation = over or bool(inconsistent)
        figures: dict[str, Any] = {"epsilon_lower_bound": bound}
        if epsilon is not None:
            figures["epsilon_accounted"] = epsilon if math.isfinite(epsilon) else None
        details: dict[str, Any] = {
            "kind": self.kind,
            "canaries": self.config.canaries,
            "inserted": int(self.included.sum()),
            "guesses": audit.guesses,
            "correct": audit.correct,
            "k_pos": audit.k_pos,
            "k_neg": audit.k_neg,
            "tests": audit.tests,
            "confidence": confidence,
            "delta": delta,
            "points": points,
            "violation": violation,
        }
        if self.kind == "clients" or self.gradient is not None:
            estimate = self._one_shot(scores, delta)
            if estimate is not None:
                figures["epsilon_estimate"] = estimate.epsilon
                details["one_shot"] = {
                    "mu": estimate.mu,
                    "sigma": estimate.sigma,
                    "null_sigma": estimate.null_sigma,
                }
        figures["audit"] = details
        figures["audit_s"] = time.perf_counter() - started
        self.history.append(
            {
                "round": view.round,
                "epsilon_lower_bound": bound,
                "epsilon_accounted": epsilon,
                "violation": violation,
            }
        )
        log.info(
            "round %d audit (%s, %d canaries, %d inserted): epsilon_lb %.4g at %.3g confidence "
            "(%d of %d guesses right) vs accounted epsilon %s",
            view.round,
            self.kind,
            self.config.canaries,
            int(self.included.sum()),
            bound,
            confidence,
            audit.correct,
            audit.guesses,
            "none" if epsilon is None else f"{epsilon:.4g}",
        )
        if violation:
            why = []
            if over:
                why.append(f"epsilon_lb {bound:.4g} > accounted epsilon {epsilon:.4g}")
            if inconsistent:
                why.append(
                    f"canary tests outside the ({epsilon:.4g}, {delta:.3g})-DP region "
                    f"beyond their confidence box: {', '.join(inconsistent)}"
                )
            log.warning(
                "PRIVACY AUDIT VIOLATION in round %d: %s - the DP mechanism or its accountant "
                "is wrong",
                view.round,
                "; ".join(why),
            )
        return figures

    def _one_shot(self, scores: np.ndarray, delta: float) -> Any:
        inserted = scores[self.included]
        if inserted.size < 2 or not 0 < delta < 1:
            return None
        try:
            if self.gradient is not None:
                return two_sample_epsilon(inserted, scores[~self.included], delta)
            return one_shot_epsilon(inserted, self.dim, delta)
        except InvalidSettingError as e:
            log.info("audit: no one-shot estimate: %s", e)
            return None

    def summary(self) -> dict[str, Any]:
        """``audit_violation`` (any audited round) and the rounds that violated."""
        return {
            "audit_violation": any(h["violation"] for h in self.history),
            "audit_violation_rounds": [h["round"] for h in self.history if h["violation"]],
        }

    def state_dict(self) -> dict[str, Any]:
        """The audited rounds' outcomes so far (and the gradient canaries' added-up scores)."""
        return {"history": list(self.history), "accumulated": self.accumulated.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the audited rounds' outcomes after a resume."""
        self.history = list(state.get("history", []))
        if "accumulated" in state:
            self.accumulated = np.asarray(state["accumulated"], dtype=np.float64)
