"""fedsim's Message-API strategy: seeded sampling, checked replies, pluggable aggregation.

The strategy is a thin adapter. It samples clients with a generator keyed by (seed, round),
sends the global weights, checks the replies at the server boundary
(:mod:`server.replies`), hands the accepted float64 deltas — ordered by client id — to an
aggregator from :mod:`server.aggregators`, and applies the aggregate as a delta:
w ← w + η_server · Δ̄ (then, with ``defense.crfl``, CRFL's clip-and-perturb step on w, its
noise drawn from a generator keyed by (seed, round), so a resumed run draws the same). The
rule learns the change it caused (:meth:`Aggregator.applied`). What happened in the round is
kept as a :class:`RoundReport`. Under ``defense.secure_aggregation`` the round runs SecAgg+'s
stages around the train message (:mod:`server.secure_aggregation`) and the rule gets the
decoded mean (or group means) instead of the clients' deltas. In a round where a malicious
server's probe crafts the models it sends (``privacy.inversion``: imprint, trap weights, model
inconsistency), the train messages carry those and the global model stays as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.errors import InvalidSettingError
from fedsim.faults import client_faults
from fedsim.models.head_averaging import holder_mean_heads
from fedsim.protocol import (
    ARRAYS,
    CONFIG,
    SECAGG_KEY,
    SERVER_ROUND,
    WEIGHTS_KEY,
    from_array_record,
    to_array_record,
)
from fedsim.scenario import Scenario
from fedsim.secagg import ModelInconsistencyError, SecAggAbortedError
from fedsim.seeding import Stream, torch_generator
from server.aggregators.crfl import crfl_clip_and_perturb
from server.client_nodes import ClientNodes
from server.parts import ServerParts
from server.personalization import local_head_mask, personal_figures, shared_only
from server.probes import RevealedSum, RoundView
from server.replies import ClientUpdate, parse_train_replies, stack_updates
from server.sampling import sample_clients

__all__ = ["FedsimStrategy", "RoundReport", "detection", "sample_clients"]

log = logging.getLogger(__name__)

CRAFTED = "the server sent crafted models (privacy.inversion): the global model stays"


@dataclass
class RoundReport:
    """What the server saw and did in one round (becomes part of the metrics line)."""

    round: int
    sampled: list[int]
    malicious: list[int]
    dropped: list[int] = field(default_factory=list)
    replied: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    accepted: list[int] | None = None
    attack_active: bool | None = None
    attack_info: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    train_loss: float | None = None
    privacy_info: dict[str, float] = field(default_factory=dict)
    secagg_info: dict[str, float] = field(default_factory=dict)
    personal: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def as_record(self) -> dict[str, Any]:
        """The report's fields for ``metrics.jsonl``."""
        return {
            "sampled": self.sampled,
            "malicious": self.malicious,
            "dropped": self.dropped,
            "replied": self.replied,
            "timed_out": self.timed_out,
            "counts": {
                "sampled": len(self.sampled),
                "dropped": len(self.dropped),
                "replied": len(self.replied),
                "failed": len(self.failed),
                "timed_out": len(self.timed_out),
                "rejected": len(self.rejected),
            },
            "accepted": self.accepted,
            # Outside the attack window the malicious clients behave honestly: count them so.
            **detection(
                self.accepted,
                self.replied,
                self.malicious if self.attack_active is not False else [],
                self.rejected,
            ),
            **({} if self.attack_active is None else {"attack_active": self.attack_active}),
            "failed": {str(k): v for k, v in sorted(self.failed.items())},
            "rejected": {str(k): v for k, v in sorted(self.rejected.items())},
            "skipped": self.skipped,
            "train_loss": self.train_loss,
            **({"attack": self.attack_info} if self.attack_info else {}),
            **self.privacy_info,
            **self.secagg_info,
            **self.personal,
        }


def detection(
    accepted: list[int] | None, replied: list[int], malicious: list[int], rejected: dict[int, str]
) -> dict[str, float | None]:
    """Detection precision and recall of a selecting rule, and its false rejections.

    Among the updates the rule saw, the ones it did not accept are its *detections*:
    precision = |detected ∩ malicious| / |detected|, recall = |detected ∩ malicious| / |malicious|,
    false-rejection rate = |detected ∩ honest| / |honest| (honest clients the rule left out).
    ``None`` where undefined (no selection, nothing detected, no malicious or honest update).

    Examples
    --------
    >>> out = detection([0, 1, 2], [0, 1, 2, 3, 4], [3, 2], {})  # detected {3, 4}
    >>> out["detection_precision"], out["detection_recall"], round(out["false_rejection_rate"], 4)
    (0.5, 0.5, 0.3333)
    """
    if accepted is None:
        return {}
    seen = set(replied) - set(rejected)
    detected = seen - set(accepted)
    bad = seen & set(malicious)
    honest = seen - bad
    hits = len(detected & bad)
    return {
        "detection_precision": hits / len(detected) if detected else None,
        "detection_recall": hits / len(bad) if bad else None,
        "false_rejection_rate": len(detected & honest) / len(honest) if honest else None,
    }


class FedsimStrategy(Strategy):
    """Seeded client sampling and robust aggregation of float64 deltas.

    Parameters
    ----------
    scenario : Scenario
        The run's scenario (sampling, faults, server learning rate).
    parts : ServerParts
        The server's parts: the rule, the colluding adversary stage, FLTrust's root update,
        DP on the server, the probes (run on every finished round) and the mirror of the
        clients' node states (after a resume it hands each client its state back in its
        first train message).
    client_to_node : ClientNodes or Mapping[int, int]
        Flower node id of each client id (from :func:`server.app.identify_clients`; a plain
        mapping is stored both ways).
    dim : int
        Number of model parameters (the expected update length).

    Attributes
    ----------
    round_offset : int
        Rounds finished before :meth:`start` was called (a resumed run): Flower counts the
        rounds of one ``start`` from 1, the strategy adds this to get the run's round.
    """

    def __init__(
        self,
        scenario: Scenario,
        parts: ServerParts,
        client_to_node: ClientNodes | Mapping[int, int],
        dim: int,
    ) -> None:
        self.scenario = scenario
        self.parts = parts
        self.aggregator = parts.aggregator
        self.malicious = parts.fed.malicious
        self.privacy = parts.privacy if parts.privacy.enabled else None
        self.client_states = parts.client_states
        self.secure = parts.secure
        if not isinstance(client_to_node, ClientNodes):
            client_to_node = ClientNodes.from_dict(client_to_node)
        self.client_to_node = client_to_node.to_node
        self.node_to_client = client_to_node.to_client
        self.dim = dim
        self.heads: dict[str, slice] | None = None  # heads averaged over their task's holders
        multitask = parts.fed.multitask("server") if parts.fed.tasks is not None else None
        if multitask is not None and scenario.data.task_assignment != "all":
            self.heads = multitask.head_slices()
        self.local_heads = local_head_mask(parts.fed)  # coordinates the server never updates
        self.round_offset = 0
        self.report: RoundReport | None = None
        self._global: torch.Tensor | None = None
        self.crafted = False  # the round's train messages carried crafted weights

    def summary(self) -> None:
        """Log the strategy's settings."""
        log.info(
            "FedsimStrategy: %d of %d clients per round, aggregator %s, server lr %s",
            self.scenario.clients_per_round,
            self.scenario.data.num_clients,
            self.aggregator.describe(),
            self.scenario.defense.server_lr,
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample this round's clients and send them the global weights."""
        server_round += self.round_offset
        sampled = sample_clients(self.scenario, server_round)
        if self.privacy is not None:
            self.privacy.check_budget(server_round, sampled)
        faults, seed = self.scenario.faults, self.scenario.seed
        dropped = [c for c in sampled if client_faults(faults, seed, server_round, c).dropout]
        self.report = RoundReport(
            round=server_round,
            sampled=sampled,
            malicious=[c for c in sampled if c in self.malicious],
            dropped=dropped,
            attack_active=self.scenario.attack.active(server_round) if self.malicious else None,
        )
        self._global = from_array_record(arrays, WEIGHTS_KEY)
        config[SERVER_ROUND] = server_round
        sent = [c for c in sampled if c not in dropped]  # a dropped client never gets it
        # A malicious server's crafted weights (privacy.inversion: imprint, trap weights,
        # model inconsistency) replace the global model in this round's train messages.
        crafted = self.parts.probes.crafted_models(server_round, self._global, sampled)
        self.crafted = bool(crafted)
        models = {c: crafted.get(c, self._global).to(self._global.dtype) for c in sampled}
        secure: dict[int, ConfigRecord] = {}
        if self.secure is not None:  # SecAgg+'s setup and key sharing, dropped clients too
            try:
                secure, left_out = self.secure.begin(
                    grid, server_round, sampled, dropped, self.client_to_node, models
                )
            except (SecAggAbortedError, InvalidSettingError) as e:
                self.report.skipped = f"secure aggregation aborted: {e}"
                self.report.secagg_info = _detected(self.secure.verify, e)
                log.warning("round %d skipped: %s", server_round, self.report.skipped)
                return []
            self.report.failed.update(left_out)
            sent = [c for c in sent if c in secure]
        handoffs = {}
        if self.client_states is not None:
            handoffs = {c: self.client_states.handoff(c) for c in sent}
            self.client_states.record(server_round, sent, self._global)
        shared = RecordDict({ARRAYS: arrays, CONFIG: config})  # one content for most clients
        records: dict[int, ArrayRecord] = {}  # one record per distinct crafted model
        for client, weights in crafted.items():
            if id(weights) not in records:
                records[id(weights)] = to_array_record(WEIGHTS_KEY, models[client])

        def content(client: int) -> RecordDict:
            """A node's content: its weights, its SecAgg+ shares, its handed-off state."""
            own = {**({SECAGG_KEY: secure[client]} if secure else {}), **handoffs.get(client, {})}
            if client in crafted:
                return RecordDict({ARRAYS: records[id(crafted[client])], CONFIG: config, **own})
            return RecordDict({ARRAYS: arrays, CONFIG: config, **own}) if own else shared

        return [
            Message(content(c), dst_node_id=self.client_to_node[c], message_type=MessageType.TRAIN)
            for c in sent
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check replies, aggregate the accepted deltas, return the new global weights."""
        server_round += self.round_offset
        report, current = self.report, self._global
        if report is None or current is None:
            raise RuntimeError("aggregate_train called before configure_train")
        if report.skipped is not None:  # secure aggregation failed before training
            self._observe(RoundView(server_round, current, None, []))
            return None, None
        if self.scenario.clients.personalization is not None:
            replies = list(replies)
            tasks = () if self.parts.fed.tasks is None else self.parts.fed.tasks.names
            report.personal = personal_figures(replies, self.node_to_client, self.malicious, tasks)
        if self.secure is not None:
            return self._aggregate_secure(server_round, replies, report, current)
        parsed = parse_train_replies(replies, self.node_to_client, self.dim)
        report.failed, report.rejected = parsed.failed, parsed.rejected
        self._book_replies(server_round, [u.client_id for u in parsed.updates])
        if self.privacy is not None:
            self.privacy.record_reports(
                {u.client_id: u.privacy for u in parsed.updates if u.privacy is not None}
            )
        if not parsed.updates:
            report.skipped = "no valid update arrived"
            self._observe(RoundView(server_round, current, None, parsed.updates))
            return None, None
        if self.crafted:
            return self._skip(server_round, current, CRAFTED, parsed.updates)

        checked = parsed.updates
        weights = torch.tensor([float(u.num_examples) for u in checked], dtype=torch.float64)
        report.train_loss = _weighted_mean(weights, [u.train_loss for u in checked])
        try:
            # FLTrust's server update first: a defence-aware adversary searches the whole rule.
            self.parts.before_aggregate(current, server_round)
            if self.parts.adversary is not None:
                staged = self.parts.adversary(checked, server_round)
                checked, report.attack_info = staged.updates, staged.info
            updates = stack_updates(checked)
            ids = [u.client_id for u in checked]
            if self.privacy is not None:
                inserted = self.parts.probes.inserted_updates(server_round, self.dim)
                result, report.privacy_info = self.privacy.aggregate(
                    updates,
                    weights,
                    ids,
                    self.aggregator,
                    server_round,
                    None if inserted is None else inserted.direction_sum,
                )
            else:  # rows straight from the boundary are finite; the adversary's are not checked
                result = self.aggregator(updates, weights, ids, finite=self.parts.adversary is None)
        except InvalidSettingError as e:
            return self._skip(server_round, current, str(e), parsed.updates)
        report.accepted = result.accepted
        update = result.update
        if self.heads is not None:  # multi-task, round robin: each head over its holders
            update = self._heads_over_holders(update, updates, weights, ids, result.accepted)
        return self._apply(server_round, current, update, parsed.updates, len(ids))

    def _heads_over_holders(
        self,
        update: torch.Tensor,
        updates: torch.Tensor,
        weights: torch.Tensor,
        ids: list[int],
        accepted: list[int] | None,
    ) -> torch.Tensor:
        """Each task head of ``update`` as the mean over its accepted holders (multi-task)."""
        assert self.heads is not None
        fed, kept = self.parts.fed, set(ids if accepted is None else accepted)
        holds = {t: [c in kept and t in fed.client_tasks(c) for c in ids] for t in self.heads}
        return holder_mean_heads(update, updates, weights.to(updates.device), self.heads, holds)

    def _apply(
        self,
        server_round: int,
        current: torch.Tensor,
        update: torch.Tensor,
        updates: list[ClientUpdate],
        num_updates: int,
        sums: list[RevealedSum] | None = None,
    ) -> tuple[ArrayRecord, MetricRecord]:
        """Apply the round's aggregate ``update``; run the probes.

        They see ``updates`` (in the clear) or the ``sums`` secure aggregation revealed.
        """
        report = self.report
        assert report is not None
        update = shared_only(update, self.local_heads)  # FedPer/FedRep: the head stays local
        new_global = current.to(torch.float64) + self.scenario.defense.server_lr * update
        if (crfl := self.scenario.defense.crfl) is not None:  # CRFL: clip and perturb w
            noise = torch_generator(self.scenario.seed, Stream.CRFL, server_round)
            new_global = crfl_clip_and_perturb(new_global, crfl.rho, crfl.sigma, noise)
        aggregate = new_global
        new_global = self.parts.after_aggregate(aggregate, server_round)  # e.g. a watermark
        # The change the clients will see (after DP noise, server lr and the float32 cast).
        self.aggregator.applied(
            new_global.to(current.dtype).to(torch.float64) - current.to(torch.float64)
        )
        view = RoundView(
            server_round, current, new_global, updates, aggregate=aggregate, sums=sums or []
        )
        self._observe(view)
        metrics = MetricRecord({"train-loss": report.train_loss, "num-updates": num_updates})
        return to_array_record(WEIGHTS_KEY, new_global.to(current.dtype)), metrics

    def _aggregate_secure(
        self,
        server_round: int,
        replies: Iterable[Message],
        report: RoundReport,
        current: torch.Tensor,
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """:meth:`aggregate_train` under SecAgg+: the rule runs on the unmasked sums only.

        With ``groups: 1`` the cohort's decoded mean goes to FedAvg (the only rule allowed) as
        one row, whose weighted mean is itself. With ``groups: k`` the rule gets the ``k``
        group means, each weighted by its group's examples (FedAvg of them is the cohort's
        mean); a selecting rule's accepted groups count as their clients accepted. Probes get
        no single updates.
        """
        assert self.secure is not None
        try:
            outcome = self.secure.finish(replies, self.node_to_client, self.dim)
        except (SecAggAbortedError, InvalidSettingError) as e:
            report.secagg_info = _detected(self.secure.verify, e)
            return self._skip(server_round, current, f"secure aggregation aborted: {e}", [])
        report.failed.update(outcome.failed)
        report.rejected = outcome.rejected
        self._book_replies(server_round, list(outcome.num_examples))
        for reason in outcome.groups_failed:
            log.warning("round %d: a SecAgg+ group failed: %s", server_round, reason)
        if self.privacy is not None:
            self.privacy.record_reports(outcome.privacy)
        ids = sorted(outcome.num_examples)
        weights = torch.tensor([float(outcome.num_examples[c]) for c in ids], dtype=torch.float64)
        report.train_loss = _weighted_mean(weights, [outcome.losses[c] for c in ids])
        report.secagg_info = outcome.figures
        sums = [
            RevealedSum(mean, {c: outcome.num_examples[c] for c in members})
            for mean, members in zip(outcome.means, outcome.members, strict=True)
        ]
        if self.crafted:
            return self._skip(server_round, current, CRAFTED, [], sums)
        means = torch.stack(outcome.means)
        group_weights = torch.tensor(outcome.weights, dtype=torch.float64)
        try:
            self.parts.before_aggregate(current, server_round)  # FLTrust on group sums
            result = self.aggregator(means, group_weights, list(range(len(outcome.means))))
        except InvalidSettingError as e:
            return self._skip(server_round, current, str(e), [])
        if result.accepted is not None and len(outcome.means) > 1:  # groups → their clients
            report.accepted = sorted(c for g in result.accepted for c in outcome.members[g])
        return self._apply(server_round, current, result.update, [], len(ids), sums)

    def _book_replies(self, server_round: int, updated: list[int]) -> None:
        """Note who replied (with an update, or rejected) and who timed out; log who is left out.

        ``report.failed`` and ``report.rejected`` are already set.
        """
        report = self.report
        assert report is not None
        report.replied = sorted(updated + list(report.rejected))
        answered = set(report.replied) | set(report.failed) | set(report.dropped)
        report.timed_out = [c for c in report.sampled if c not in answered]
        for client, reason in {**report.failed, **report.rejected}.items():
            log.warning("round %d: client %d left out: %s", server_round, client, reason)

    def _skip(
        self,
        server_round: int,
        current: torch.Tensor,
        reason: str,
        updates: list[ClientUpdate],
        sums: list[RevealedSum] | None = None,
    ) -> tuple[None, None]:
        """Skip the round (the model stays ``current``) for ``reason``; the probes still run.

        ``updates`` (in the clear) or ``sums`` (under secure aggregation) are what the server
        saw of the round.
        """
        assert self.report is not None
        self.report.skipped = reason
        log.warning("round %d skipped: %s", server_round, reason)
        self._observe(RoundView(server_round, current, None, updates, sums=sums or []))
        return None, None

    def _observe(self, view: RoundView) -> None:
        """Run the probes on a finished round, with the privacy accounted so far."""
        if self.parts.probes and self.privacy is not None:
            view = replace(view, accounted=self.privacy.metrics())
        self.parts.probes.observe(view)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """No federated evaluation: the server evaluates the global model on held-out data."""
        return []

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Nothing to aggregate (see :meth:`configure_evaluate`)."""
        return None


def _detected(verify: bool, error: Exception) -> dict[str, int]:
    """``model_inconsistency_detected`` of a failed secure round (with ``clients.verify_model``)."""
    if not verify:
        return {}
    return {"model_inconsistency_detected": int(isinstance(error, ModelInconsistencyError))}


def _weighted_mean(weights: torch.Tensor, values: list[float]) -> float:
    """``Σ w_i v_i / Σ w_i`` in float64 (the round's train loss, weighted by examples)."""
    return float((weights @ torch.tensor(values, dtype=torch.float64)) / weights.sum())
