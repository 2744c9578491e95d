"""The server's side of differential privacy in a run: DP-FedAvg, ε per round, the budget.

- **Central (client-level) DP** (``privacy.central_dp``): every checked update is clipped to S,
  the clipped updates are summed, N(0, z²S²) is added and the sum is divided by the expected
  cohort size m (:class:`~fedsim.privacy.central.DPFedAvg`; McMahan et al., ICLR 2018). With a
  robust rule the rule runs on the clipped updates and the same noise (std zS/m) is added to
  its output — which is calibrated for the mean, not for the rule, so a warning is logged.
  One Gaussian step per round is accounted (:class:`~fedsim.privacy.central.CentralAccountant`)
  at q = m/N when clients are Poisson-sampled (``amplification: poisson``; the server then
  samples each client independently with probability m/N), else q = 1.
- **Local (record-level) DP** (``privacy.local_dp``): honest clients report their cumulative
  ledgers; the server records each client's ε and the maximum
  (:class:`~fedsim.privacy.local.ClientEpsilons`).
- **Budget** (``privacy.budget``): before a round runs, the server predicts the ε it would
  reach (central: one more round; local: each sampled honest client's ledger plus this round's
  DP-SGD) and stops the run cleanly, with :class:`BudgetExhausted`, if it would exceed the
  budget.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from fedsim.data import FederatedData
from fedsim.errors import InvalidSettingError
from fedsim.privacy import AdaptiveClip, CentralAccountant, DPFedAvg, central_sample_rate
from fedsim.privacy.local import ClientEpsilons, LocalDPRound, local_dp_round
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, torch_generator
from server.aggregators import Aggregate, Aggregator
from server.aggregators.fedavg import FedAvg

__all__ = ["BudgetExhausted", "ServerPrivacy"]

log = logging.getLogger(__name__)


class BudgetExhausted(Exception):
    """The next round would take ε above ``privacy.budget``: the run stops before it."""


class ServerPrivacy:
    """DP mechanisms and accounting of one run, on the server.

    Parameters
    ----------
    scenario : Scenario
        The run's scenario (its ``privacy`` block, client counts and seed).
    data : FederatedData
        The clients' partitions (their sizes fix each client's DP-SGD steps).
    aggregator : Aggregator
        The run's rule; FedAvg alone gets the exact DP-FedAvg mean.
    malicious : frozenset[int]
        Malicious clients do not run DP-SGD and are left out of the local ε.
    """

    def __init__(
        self,
        scenario: Scenario,
        data: FederatedData,
        aggregator: Aggregator,
        malicious: frozenset[int] = frozenset(),
    ) -> None:
        self.scenario = scenario
        self.data = data
        self.malicious = malicious
        privacy = scenario.privacy
        self.budget = privacy.budget
        local = privacy.local_dp
        self.local = ClientEpsilons(local.delta, local.accountant) if local is not None else None
        self.mechanism: DPFedAvg | None = None
        self.accountant: CentralAccountant | None = None
        self.mean_only = isinstance(aggregator, FedAvg)
        central = privacy.central_dp
        if central is not None:
            m = scenario.clients_per_round
            clip: float | AdaptiveClip = central.clip
            if central.adaptive:
                sigma_b = central.count_noise_multiplier
                clip = AdaptiveClip(
                    central.clip,
                    central.target_quantile,
                    central.clip_lr,
                    count_noise_multiplier=(
                        max(m / 20, central.noise_multiplier) if sigma_b is None else sigma_b
                    ),
                )
            self.mechanism = DPFedAvg(central.noise_multiplier, clip, m)
            self.accountant = CentralAccountant(
                central.noise_multiplier,
                central_sample_rate(m, scenario.data.num_clients, central.amplification),
                central.delta,
                central.accountant,
            )
        self._rule_name = aggregator.name

    def calibration_warning(self) -> str | None:
        """Why the central noise is not calibrated for the run's rule (``None`` if it is)."""
        if self.mechanism is None or self.mean_only:
            return None
        return (
            f"central DP with aggregator {self._rule_name!r}: the noise (std z*S/m) is "
            f"calibrated for the mean, whose sensitivity is S/m; {self._rule_name} can move by "
            "up to S, so the reported epsilon understates the privacy loss"
        )

    @property
    def enabled(self) -> bool:
        """Whether any DP mechanism is on."""
        return self.local is not None or self.mechanism is not None

    def check_budget(self, server_round: int, sampled: list[int]) -> None:
        """Raise :class:`BudgetExhausted` if running ``server_round`` would exceed the budget."""
        if self.budget is None:
            return
        predicted = {}
        if self.accountant is not None:
            predicted["central"] = self.accountant.epsilon_after(1)
        if self.local is not None:
            predicted["local"] = self.local.predict_max(
                (c, self._local_round(c).entry()) for c in sampled if c not in self.malicious
            )
        over = {kind: eps for kind, eps in predicted.items() if eps > self.budget}
        if over:
            detail = ", ".join(f"{kind} epsilon {eps:.4g}" for kind, eps in over.items())
            raise BudgetExhausted(
                f"privacy budget {self.budget} reached: round {server_round} would take it to "
                f"{detail}; stopped after round {server_round - 1}"
            )

    def _local_round(self, client_id: int) -> LocalDPRound:
        return local_dp_round(self.scenario, len(self.data.client(client_id)[1]))

    def record_reports(self, reports: dict[int, tuple[list[float], float]]) -> None:
        """Keep the ledgers and ε the honest clients reported this round."""
        if self.local is None:
            return
        for client_id, (history, epsilon) in reports.items():
            if client_id not in self.malicious:
                self.local.report(client_id, history, epsilon)

    def aggregate(
        self,
        updates: torch.Tensor,
        weights: torch.Tensor,
        client_ids: list[int],
        aggregator: Aggregator,
        server_round: int,
        inserted: torch.Tensor | None = None,
    ) -> tuple[Aggregate, dict[str, float]]:
        """Aggregate a round's updates: plainly, or with DP-FedAvg's clip and noise.

        ``inserted`` (central DP with FedAvg only) is the ``(d,)`` sum of unit directions an
        audit inserts as canary clients: each is sent at the clip norm S, so the sum gains
        S·Σcⱼ before the noise. Canaries are no clients: they do not count in the clipped
        fraction, the adaptive clip's quantile or any client figure.
        """
        if self.mechanism is None or self.accountant is None:
            return aggregator(updates, weights, client_ids), {}
        clipped, norms = self.mechanism.client_step(updates)
        generator = torch_generator(self.scenario.seed, Stream.PRIVACY, server_round)
        if inserted is not None and not self.mean_only:
            raise InvalidSettingError(
                f"canary clients go into the DP-FedAvg sum; aggregator {self._rule_name!r} has none"
            )
        if self.mean_only:
            total = None
            if inserted is not None:
                canaries = self.mechanism.clip * inserted.to(clipped.device, torch.float64)
                total = (clipped.sum(dim=0) + canaries) / self.mechanism.expected_clients
            result = self.mechanism.server_step(clipped, norms, generator, total)
            aggregate = Aggregate(update=result.update)
        else:
            robust = aggregator(clipped, weights, client_ids)
            result = self.mechanism.server_step(clipped, norms, generator, robust.update)
            aggregate = Aggregate(result.update, robust.accepted, robust.info)
        self.accountant.record_round()
        return aggregate, {f"dp_{key}": value for key, value in result.info.items()}

    def metrics(self) -> dict[str, Any]:
        """ε and δ spent so far, for the round's metrics line.

        Local DP: ``epsilon`` is the maximum over clients and ``epsilon_clients`` each
        client's value; central DP: ``epsilon`` is the client-level ε (``epsilon_central`` when
        both are on, since ``epsilon`` is then the local one).
        """
        out: dict[str, Any] = {}
        if self.accountant is not None:
            out["epsilon"] = self.accountant.epsilon()
            out["delta"] = self.accountant.delta
        if self.local is not None:
            if "epsilon" in out:
                out["epsilon_central"], out["delta_central"] = out["epsilon"], out["delta"]
            maximum = self.local.maximum()
            out["epsilon"] = maximum if maximum is not None else 0.0
            out["delta"] = self.local.delta
            out["epsilon_clients"] = {str(c): e for c, e in sorted(self.local.epsilons.items())}
        return out

    def state_dict(self) -> dict[str, Any]:
        """What the server's accounting carries between rounds (for checkpoints).

        Rounds of central DP accounted, the adaptive clip C, and each client's reported
        local-DP ledger and ε.
        """
        state: dict[str, Any] = {}
        if self.accountant is not None:
            state["central_rounds"] = self.accountant.rounds
        if self.mechanism is not None and self.mechanism.adaptive is not None:
            state["adaptive_clip"] = self.mechanism.adaptive.clip
        if self.local is not None:
            state["local"] = self.local.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if self.accountant is not None:
            self.accountant.rounds = int(state["central_rounds"])
        if self.mechanism is not None and self.mechanism.adaptive is not None:
            self.mechanism.adaptive.clip = float(state["adaptive_clip"])
        if self.local is not None:
            self.local.load_state_dict(state["local"])

    def describe(self) -> dict[str, Any]:
        """The mechanisms and accounting assumptions, for ``summary.json``."""
        privacy = self.scenario.privacy
        out: dict[str, Any] = {}
        if privacy.local_dp is not None:
            out["local_dp"] = {
                "unit": "record",
                "accountant": privacy.local_dp.accountant,
                "malicious_clients": "train without DP-SGD",
            }
        if self.mechanism is not None and self.accountant is not None:
            assert privacy.central_dp is not None
            out["central_dp"] = {
                "unit": "client",
                "mechanism": self.mechanism.describe(),
                "aggregator_sensitivity": "mean" if self.mean_only else "not calibrated",
                "amplification": privacy.central_dp.amplification,
                "sample_rate": self.accountant.sample_rate,
                "accountant": self.accountant.accountant,
            }
        if self.budget is not None:
            out["budget"] = self.budget
        return out
