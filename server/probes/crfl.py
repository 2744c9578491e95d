"""The CRFL probe (data → model): certified accuracy of a CRFL run against backdoors.

Active whenever the scenario sets ``defense.crfl`` with its ``certify`` block (the default)
and a training noise σ > 0. In its rounds (default: the last) it runs CRFL's certified
prediction (Xie et al., ICML 2021; :class:`fedsim.certify.ParameterSmoothing`): ``models``
noisy copies of the clipped global model vote on a seeded subset of the server's held-out set
(FLTrust's root set taken out), and each sample's vote gives a certified trigger norm
(:func:`fedsim.certify.crfl_radius`). It reports

- ``crfl_certified_accuracy``: trigger-norm label (``r0.1``) → share of the subset classified
  correctly by the smoothed model *and* certified for every trigger of at most that ℓ2 norm,
  with R = the run's attackers (``crfl_attackers``: the malicious clients, at most one
  round's cohort; 1 when the run has no attack, as a hypothetical attacker);
- ``crfl_certified_accuracy_attackers``: ``R<k>`` → the same mapping with k attackers, for
  each k of ``certify.attackers`` (the paper's figure: certified accuracy vs number of
  attackers);
- with a backdoor attack: ``crfl_trigger_norm`` (the largest ℓ2 norm, over the subset, of
  what the trigger changes, in the model's input space) and ``crfl_certified_accuracy_trigger``
  (the share certified correct with a radius above that sample's trigger norm);
- ``crfl_certify_s``: the probe's wall time.

The mapping has the shape of the smoothing probe's ``certified_accuracy`` but its own key:
a run may have both (``robustness.certify``), and the radii mean different things (a
perturbation of the test input there, the training trigger's norm here). ``summary.json``
gets ``final_crfl_certified_accuracy`` and ``final_crfl_certified_accuracy_attackers``; the
per-sample records (``label``, ``prediction`` (-1 abstains), ``count``, ``n`` = M,
``radius``, as in ``certify_round<r>.json``) go to ``RUN_DIR/crfl/crfl_certify_round<r>.json``.

Constants of the radius: σ and ρ from ``defense.crfl``, σ_T = ``certify.sigma_test``; η the
clients' learning rate; τ = local epochs × ⌈mean client size / batch size⌉ local steps; γ and
q_B/n_B the backdoor's ``boost`` and ``poison_fraction`` (or ``certify.scale`` /
``certify.poison_fraction``); L_Z = ``certify.lipschitz`` (an assumption: the theorem's
smoothness constant is not computable for a CNN); each attacker's weight 1/(clients per round)
(FedAvg's with equal sizes); t_adv the attack's last round up to the certified round (no
attack: that round, the least contraction), so ρ_t has one entry per round after t_adv plus
the test-time clip.

Threat model ``global_model``: the certificate is about the deployed model's predictions.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from fedsim.attacks import Backdoor
from fedsim.certify import CRFLSetting, ParameterSmoothing, certified_accuracy
from fedsim.federation import Federation
from fedsim.results import write_json_atomic
from fedsim.seeding import Stream, torch_generator
from fedsim.training import single_thread
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.server_data import ServerData

__all__ = ["CRFLProbe"]

log = logging.getLogger(__name__)


@PROBES.register("crfl")
class CRFLProbe(Probe):
    """CRFL's certified accuracy of the global model against R attackers' backdoors.

    Parameters
    ----------
    fed : Federation
        The run's scenario (``defense.crfl`` with ``certify``), data and model factory.
    data : ServerData
        The server's held-out set: the certified subset is drawn from it.
    out_dir : Path, optional
        The run directory; records go to ``out_dir / "crfl"``.
    """

    name = "crfl"
    direction = "data→model"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        scenario = fed.scenario
        crfl = scenario.defense.crfl
        if crfl is None or crfl.certify is None:
            raise ValueError("the crfl probe needs defense.crfl with its certify block")
        self.fed, self.crfl, self.config, self.out_dir = fed, crfl, crfl.certify, out_dir
        x, y = data.held_out
        order = torch.randperm(len(y), generator=torch_generator(scenario.seed, Stream.CRFL, 0, 1))
        chosen = order[: min(self.config.samples, len(y))].sort().values
        self.x, self.y = x[chosen], y[chosen]
        self.smoothing = ParameterSmoothing(
            sigma_test=self.config.sigma_test or crfl.sigma,
            rho=crfl.rho,
            models=self.config.models,
            alpha=self.config.alpha,
        )
        per_round = scenario.clients_per_round
        self.attackers = max(1, min(scenario.num_malicious, per_round))
        self.backdoor = fed.attack if isinstance(fed.attack, Backdoor) else None
        self.last: dict[str, Any] = {}

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> CRFLProbe | None:
        """The probe for ``defense.crfl.certify`` (``None`` without it, or with σ = 0).

        Raises
        ------
        ScenarioError
            ``certify.rounds`` past the run's end.
        """
        crfl = fed.scenario.defense.crfl
        if crfl is None or crfl.certify is None:
            return None
        check_rounds("defense.crfl.certify.rounds", crfl.certify.rounds, fed.scenario.rounds)
        if crfl.sigma == 0:  # Theorem 3 needs training noise: its radius would be 0 for all
            log.info("crfl: sigma = 0 trains without noise, so nothing is certified; no probe")
            return None
        return cls(fed, data, out_dir)

    @property
    def threat_model(self) -> str:
        """``global_model``: the certificate covers the deployed model's predictions."""
        return "global_model"

    @property
    def rounds(self) -> list[int]:
        """The certified rounds (``certify.rounds``; default the run's last)."""
        rounds = self.config.rounds
        return [self.fed.scenario.rounds] if rounds is None else list(rounds)

    def setting(self, server_round: int, attackers: int) -> CRFLSetting:
        """Theorem 3's constants for a certificate after ``server_round`` (see the module)."""
        scenario, config = self.fed.scenario, self.config
        clients = scenario.clients
        sizes = self.fed.data.sizes()
        steps = math.ceil(float(sizes.mean()) / clients.batch_size) if len(sizes) else 1
        attack = scenario.attack
        last_attack = None if attack.name == "none" else (attack.stop_round or scenario.rounds)
        t_adv = server_round if last_attack is None else min(last_attack, server_round)
        backdoor = self.backdoor
        scale = config.scale or (backdoor.boost if backdoor is not None else 1.0)
        fraction = config.poison_fraction or (
            backdoor.poison_fraction if backdoor is not None else 0.5
        )
        return CRFLSetting(
            sigma=self.crfl.sigma,
            sigma_test=self.smoothing.sigma_test,
            rhos=[self.crfl.rho] * (server_round - t_adv + 1),
            lr=clients.lr,
            local_iters=float(clients.local_epochs * max(steps, 1)),
            lipschitz=config.lipschitz,
            scale=scale,
            poison_per_batch=fraction,
            batch_size=1.0,
            attacker_weights=[1.0 / scenario.clients_per_round] * attackers,
        )

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Certify the subset on the round's global model; return the figures."""
        start = time.perf_counter()
        if not bool(torch.isfinite(view.model).all()):  # nothing to certify; no figure
            log.warning("round %d crfl: the global model is not finite, not certified", view.round)
            return {}
        model = self.fed.model("crfl")
        device = next(model.parameters()).device
        generator = torch_generator(self.fed.scenario.seed, Stream.CRFL, view.round, 2)
        with single_thread(device):
            votes = self.smoothing.votes(model, view.model, self.x.to(device), generator)
        radii, setting = self.config.radii, self.setting(view.round, self.attackers)
        records = self.smoothing.certify(votes, self.y, setting)
        figures: dict[str, Any] = {
            "crfl_certified_accuracy": certified_accuracy(records, radii),
            "crfl_certified_accuracy_attackers": {
                f"R{r}": certified_accuracy(
                    self.smoothing.certify(votes, self.y, setting.with_attackers(r)), radii
                )
                for r in self.config.attackers
            },
            "crfl_attackers": self.attackers,
        }
        if self.backdoor is not None:
            figures.update(self._trigger(records))
        if self.out_dir is not None:
            folder = self.out_dir / self.name
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                folder / f"crfl_certify_round{view.round}.json", [r.to_dict() for r in records]
            )
        figures["crfl_certify_s"] = time.perf_counter() - start
        log.info("round %d crfl certification: %s", view.round, figures)
        self.last = figures
        return figures

    def _trigger(self, records: list) -> dict[str, float]:
        """The trigger's norm on the subset and the share certified correct beyond it."""
        assert self.backdoor is not None
        norms = torch.linalg.vector_norm(
            (self.backdoor.stamp(self.x) - self.x).flatten(1).to(torch.float64), dim=1
        )
        certified = [
            r.prediction == r.label and r.radius > float(n)
            for r, n in zip(records, norms, strict=True)
        ]
        return {
            "crfl_trigger_norm": float(norms.max()) if len(norms) else 0.0,
            "crfl_certified_accuracy_trigger": sum(certified) / max(len(certified), 1),
        }

    def summary(self) -> dict[str, Any]:
        """``final_crfl_certified_accuracy`` and ``final_crfl_certified_accuracy_attackers``."""
        if not self.last:
            return {}
        return {
            "final_crfl_certified_accuracy": dict(self.last["crfl_certified_accuracy"]),
            "final_crfl_certified_accuracy_attackers": dict(
                self.last["crfl_certified_accuracy_attackers"]
            ),
        }

    def state_dict(self) -> dict[str, Any]:
        """The last certified round's figures (the summary reads them after a resume)."""
        return {"last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the last certified round's figures."""
        self.last = dict(state.get("last", {}))
