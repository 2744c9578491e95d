"""The membership-inference probe (model → data): which audited examples were trained on.

Configured by ``privacy.membership``. The audited examples (``targets`` members and as many
non-members, :mod:`server.probes.membership_targets`) are scored in the audited rounds; the
figures are the attack's AUC, TPR at FPR ≤ 1 % and ≤ 0.1 % and balanced accuracy
(:func:`~fedsim.membership.membership_metrics`; Carlini et al., IEEE S&P 2022, for why the
low-FPR figures), so ``summary.json`` gets ``final_mia_auc`` and the others. The ROC of each
audited round goes to ``RUN_DIR/membership/roc_round<r>.json`` and a log–log PNG next to it.

Threat models:

- ``outsider`` (the probe's threat model ``query``): the global model's logits on the
  audited examples in the audited round — a black-box party after training.
- ``client`` (``global_model``): a curious client holds every global model it received; its
  score is the mean of the per-round scores over rounds 1..r, the way FL-specific attacks
  combine a sequence of snapshots (Nasr, Shokri, Houmansadr, IEEE S&P 2019, which uses the
  models of several rounds; Melis et al., IEEE S&P 2019, for the client as the attacker).
- ``server`` (``update``, attack ``update``): the curious server sees each client's update Δ
  before any defence; an example's score is the mean over the rounds so far of
  cos(−∇ℓ(w_t; x), Δ_t) with its (home) client's updates
  (:func:`~fedsim.membership.update_cosine_score`); at ``level: client`` a candidate data set's
  mean gradient against the best-matching update of the round
  (:func:`~fedsim.membership.client_level_scores`).

The white-box ``gradient_norm`` (client or server) scores −‖∇ℓ(w; x)‖ on the same models
(Nasr, Shokri, Houmansadr, IEEE S&P 2019: members are fitted, their gradients are small).
Attacks on the model's outputs: ``loss`` (Yeom et al., CSF 2018), ``lira`` (online or offline,
Carlini et al., IEEE S&P 2022) and ``rmia`` (Zarifzadeh et al., ICML 2024). LiRA and RMIA need
reference federations: ``fedsim run`` trains them before the run
(:mod:`fedsim.run.references`) and caches them in ``RUN_DIR/membership/references.pt``; the
probe reads them there and reports their cost as ``mia_reference_s``. Each attack is a class in
:data:`~server.probes.membership_attacks.MEMBERSHIP_ATTACKS` (what it needs and how it scores a
round); the probe carries the running sums of the per-round scores across rounds, in
:meth:`state_dict` for checkpoints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedsim.errors import RunError, ScenarioError
from fedsim.federation import Federation
from fedsim.membership import example_gradients, membership_metrics, roc_curve
from fedsim.params import load_flat_params
from fedsim.reference_models import (
    REFERENCE_DIR,
    ReferenceModels,
    load_references,
    reference_fingerprint,
)
from fedsim.scenario import MembershipConfig
from fedsim.training import single_thread
from fedsim.validation import require_known
from server.probes.base import PROBES, Probe, RoundView
from server.probes.membership_attacks import MEMBERSHIP_ATTACKS, MembershipAttack
from server.probes.membership_targets import (
    MembershipTargets,
    audited_rounds,
    membership_targets,
    reference_in_mask,
)
from server.server_data import ServerData

__all__ = ["MembershipProbe"]

log = logging.getLogger(__name__)

THREAT_MODELS = {"outsider": "query", "client": "global_model", "server": "update"}
EVAL_BATCH = 1024


@PROBES.register("membership")
class MembershipProbe(Probe):
    """The scenario's membership-inference attack on its audited examples.

    Parameters
    ----------
    fed : Federation
        The run's data, model factory and malicious set.
    data : ServerData
        The server's held-out set (FLTrust's root set taken out): the non-members.
    out_dir : Path, optional
        The run directory: reference models are read from and ROC curves written to
        ``out_dir / "membership"``.
    """

    name = "membership"
    direction = "model→data"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        config = fed.scenario.privacy.membership
        if config is None:
            raise ValueError("the scenario has no privacy.membership block")
        self.fed, self.config, self.out_dir = fed, config, out_dir
        self.attack: MembershipAttack = MEMBERSHIP_ATTACKS.get(config.attack)(config)
        self.audited = audited_rounds(config, fed.scenario)
        self.targets: MembershipTargets = membership_targets(fed, data, config)
        self.in_mask = reference_in_mask(config, self.targets, fed.scenario.seed)
        self.references: ReferenceModels | None = None
        self.sums = np.zeros(self.targets.size)
        self.counts = np.zeros(self.targets.size)
        self.history: dict[int, dict[str, float]] = {}

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> MembershipProbe | None:
        """The probe ``privacy.membership`` asks for (``None`` without that block).

        Raises
        ------
        ScenarioError
            An attack the threat model cannot run, ``level: client`` with an attack that
            cannot see clients, too few references, rounds past the run's end, more targets
            than the member clients or the held-out pool hold.
        """
        config = fed.scenario.privacy.membership
        if config is None:
            return None
        require_known("privacy.membership.attack", config.attack, MEMBERSHIP_ATTACKS.names())
        attack = MEMBERSHIP_ATTACKS.get(config.attack)(config)
        _check_attack(config, attack)
        needed = attack.min_references()
        if config.references < needed:
            kind = "online" if config.online else "offline"
            raise ScenarioError(
                "privacy.membership.references",
                config.references,
                f"at least {needed} for {kind} {config.attack} (fix_variance: "
                f"{str(config.fix_variance).lower()})",
            )
        return cls(fed, data, out_dir)

    @property
    def threat_model(self) -> str:
        """``query`` (outsider), ``global_model`` (client) or ``update`` (server)."""
        return THREAT_MODELS[self.config.threat_model]

    @property
    def rounds(self) -> list[int]:
        """The audited rounds (outsider); every round up to the last audited one otherwise."""
        if self.config.threat_model == "outsider":
            return list(self.audited)
        return list(range(1, self.audited[-1] + 1))

    @property
    def reference_rounds(self) -> list[int]:
        """The rounds whose reference global models the attack needs (none without references)."""
        return self.rounds if self.attack.min_references() else []

    # -- observing ------------------------------------------------------------------------

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Score the audited examples on this round's view; figures on the audited rounds."""
        scored = self.attack.round_scores(self, view)
        if scored is not None:
            self.sums[scored.scored] += scored.scores[scored.scored]
            self.counts[scored.scored] += 1
        if view.round not in self.audited:
            return {}
        scores = self.sums / np.maximum(self.counts, 1)
        if self.config.threat_model == "outsider":  # the last model only
            self.sums[:], self.counts[:] = 0.0, 0.0
        metrics = membership_metrics(scores, self.targets.members)
        figures = metrics.as_metrics()
        self.history[view.round] = figures
        log.info("round %d membership (%s): %s", view.round, self.config.attack, figures)
        if self.config.save_roc and self.out_dir is not None:
            self._save_roc(self.out_dir / REFERENCE_DIR, view.round, scores, figures)
        return figures

    # -- what the attacks ask for (server.probes.membership_attacks.Scorer) -----------------

    def logits(self, weights: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """The model's logits on ``x`` under each of ``weights`` (in batches, on one thread)."""
        model = self.fed.model("membership")
        device = next(model.parameters()).device
        out = []
        with single_thread(device), torch.no_grad():
            for w in weights:
                load_flat_params(model, w)
                model.eval()
                out.append(
                    torch.cat([model(b.to(device)).cpu() for b in x.split(EVAL_BATCH)])
                    if len(x)
                    else torch.zeros(0, self.fed.data.dataset.num_classes)
                )
        return out

    def model_at(self, weights: torch.Tensor) -> torch.nn.Module:
        """The probe's model holding ``weights``, in evaluation mode."""
        model = self.fed.model("membership")
        load_flat_params(model, weights)
        model.eval()
        return model

    def gradients(self, model: torch.nn.Module, idx: np.ndarray) -> torch.Tensor:
        """``(len(idx), d)`` float64 per-example gradients of the audited examples ``idx``."""
        device = next(model.parameters()).device
        index = torch.from_numpy(idx)
        x, y = self.targets.x[index].to(device), self.targets.y[index].to(device)
        return example_gradients(model, x, y).cpu().to(torch.float64)

    def reference_weights(self, server_round: int) -> torch.Tensor:
        """``(R, d)`` the reference federations' global weights after ``server_round``."""
        if self.references is None:
            self.references = self._load_references()
        return self.references.at(server_round)

    def _load_references(self) -> ReferenceModels:
        refs = load_references(self.out_dir) if self.out_dir is not None else None
        if refs is None:
            raise RunError(
                f"privacy.membership: attack {self.config.attack} needs reference models in "
                f"RUN_DIR/{REFERENCE_DIR}/; `fedsim run` trains them before the run"
            )
        if refs.fingerprint != reference_fingerprint(self.fed.scenario) or not np.array_equal(
            refs.in_mask.numpy(), self.in_mask
        ):
            raise RunError(
                f"the reference models in {self.out_dir}/{REFERENCE_DIR}/ were trained for "
                "another scenario; delete them to train them again"
            )
        return refs

    def use_references(self, refs: ReferenceModels) -> None:
        """Use ``refs`` instead of reading them from the run directory."""
        self.references = refs

    # -- results and state ------------------------------------------------------------------

    def _save_roc(
        self, directory: Path, server_round: int, scores: np.ndarray, figures: dict[str, float]
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        curve = roc_curve(scores, self.targets.members)
        config = self.config
        record = {
            "round": server_round,
            "attack": config.attack,
            "threat_model": config.threat_model,
            "level": config.level,
            "members": int(curve.n_members),
            "non_members": int(curve.n_non_members),
            **figures,
            "fpr": curve.fpr.tolist(),
            "tpr": curve.tpr.tolist(),
        }
        path = directory / f"roc_round{server_round:03d}.json"
        path.write_text(json.dumps(record), encoding="utf-8")
        figure = Figure(figsize=(4, 4))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        floor = 1.0 / max(curve.n_non_members, 1) / 2
        ax.loglog(np.maximum(curve.fpr, floor), np.maximum(curve.tpr, floor), label=config.attack)
        ax.loglog([floor, 1], [floor, 1], "k:", linewidth=0.8, label="chance")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(f"{config.attack}, {config.threat_model}, round {server_round}")
        ax.text(0.98, 0.02, f"AUC {figures['mia_auc']:.3f}", ha="right", transform=ax.transAxes)
        ax.legend(loc="upper left")
        figure.tight_layout()
        figure.savefig(path.with_suffix(".png"), dpi=100)

    def summary(self) -> dict[str, Any]:
        """The reference models' cost and how many examples were audited."""
        refs = self.references
        if refs is None and self.attack.min_references() and self.out_dir is not None:
            refs = load_references(self.out_dir)
        return {
            "mia_reference_s": refs.seconds if refs is not None else 0.0,
            "mia_references": int(refs.weights.shape[0]) if refs is not None else 0,
            "mia_members": int(self.targets.members.sum()),
            "mia_non_members": int((~self.targets.members).sum()),
        }

    def state_dict(self) -> dict[str, Any]:
        """The running score sums and counts, and the figures of the audited rounds so far."""
        return {
            "sums": torch.from_numpy(self.sums.copy()),
            "counts": torch.from_numpy(self.counts.copy()),
            "history": {str(r): dict(f) for r, f in self.history.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state after a resume."""
        if "sums" in state:
            self.sums = state["sums"].numpy().astype(np.float64)
            self.counts = state["counts"].numpy().astype(np.float64)
        self.history = {int(r): dict(f) for r, f in state.get("history", {}).items()}


def _check_attack(config: MembershipConfig, attack: MembershipAttack) -> None:
    """Raise a ScenarioError unless ``config``'s threat model and level can run ``attack``."""
    names = MEMBERSHIP_ATTACKS.names()
    if config.threat_model not in attack.threat_models:
        if config.threat_model == "server":  # the server's view: only its own attacks
            server = [n for n in names if "server" in MEMBERSHIP_ATTACKS.get(n).threat_models]
            others = [n for n in names if n not in server]
            raise ScenarioError(
                "privacy.membership.attack",
                config.attack,
                f"{' or '.join(server)} for threat_model: server ({', '.join(others)}: "
                "outsider or client)",
            )
        raise ScenarioError(
            "privacy.membership.threat_model",
            config.threat_model,
            f"{' or '.join(attack.threat_models)} for attack: {config.attack} ({attack.needs})",
        )
    if config.level not in attack.levels:
        seeing = [MEMBERSHIP_ATTACKS.get(n) for n in names]
        seeing = [a for a in seeing if config.level in a.levels]
        models = sorted({m for a in seeing for m in a.threat_models})
        raise ScenarioError(
            "privacy.membership.level",
            config.level,
            f"{' or '.join(attack.levels)} for threat_model: {config.threat_model}, attack: "
            f"{config.attack}, which cannot see clients (level: {config.level} needs "
            f"threat_model: {' or '.join(models)}, attack: {' or '.join(a.name for a in seeing)})",
        )
