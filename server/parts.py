"""The server's parts, built once from a validated scenario: one owner for preflight and run.

:meth:`ServerParts.build` makes the aggregation pipeline, the colluding adversary stage, the
server's data (:class:`~server.server_data.ServerData`: the held-out set, FLTrust's root set
taken out), the FLTrust root update, DP on the server, the probes (each given the server's
data) and (when asked) the mirror of the clients' node states. Preflight builds them to find
every problem before the first round; the ServerApp builds them to run. A setting a part
refuses becomes a :class:`~fedsim.errors.ScenarioError` naming the scenario key, so both report
it the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedsim.attacks import UpdateAttack
from fedsim.attacks.colluding import ColludingAttack, ServerSideUpdate
from fedsim.errors import SETTING_ERRORS, InvalidSettingError, ScenarioError
from fedsim.federation import Federation
from fedsim.scenario import Scenario
from fedsim.secagg import SecAggSettings
from fedsim.seeding import Stream, derive_seed
from fedsim.validation import require_known
from fedsim.watermark import WaffleEmbedding
from server import aggregators
from server.adversary_stage import AdversaryStage
from server.aggregators.fltrust import FLTrust
from server.aggregators.pipeline import Pipeline
from server.client_state import ClientStateMirror
from server.privacy import ServerPrivacy
from server.probes import ProbeSet
from server.root_update import RootUpdate
from server.secure_aggregation import SecureAggregation
from server.server_data import ServerData

__all__ = [
    "ServerParts",
    "build_aggregator",
    "default_f",
    "fltrust_rule",
    "output_layer",
    "secure_aggregation",
]

SECURE_RULES = ("fedavg",)
"""The rules that run on the one sum SecAgg+ reveals: the mean needs nothing else."""
CLIENT_TRACKING_RULES = ("foolsgold", "fldetector")
"""Rules that follow each client across rounds: nothing to follow in random group sums."""


def default_f(scenario: Scenario) -> int:
    """Byzantine updates a rule assumes per round when ``f`` is not given.

    The expected number of malicious clients in a round's sample,
    ⌈num_malicious · per_round / num_clients⌉ (all of them under full participation).
    """
    per_round, total = scenario.clients_per_round, scenario.data.num_clients
    return min(per_round, -(-scenario.num_malicious * per_round // total))


def build_aggregator(scenario: Scenario, model: nn.Module | None = None) -> aggregators.Aggregator:
    """The scenario's rule behind its ``defense.pre`` stages, with defaults filled in.

    - ``f`` defaults from the attack block (see :func:`default_f`), for rules and for
      pre-aggregation stages that take it (``nnm``, ``arc``);
    - ``trimmed_mean`` without ``k`` or ``beta`` trims k = max(1, f) per side;
    - ``deepsight`` without ``output_size``/``penultimate_size`` reads them from ``model``'s
      last ``nn.Linear`` (:func:`output_layer`);
    - randomised rules and stages get ``seed`` derived from the scenario seed.
    """
    name = scenario.defense.aggregator
    accepted = aggregators.accepts(name)
    params = dict(scenario.defense.params)
    if "f" in accepted:
        params.setdefault("f", default_f(scenario))
    if name == "trimmed_mean" and "k" not in params and "beta" not in params:
        params["k"] = max(1, default_f(scenario))
    if name == "deepsight" and model is not None:
        outputs, inputs = output_layer(model)
        params.setdefault("output_size", outputs)
        params.setdefault("penultimate_size", inputs)
    seed = derive_seed(scenario.seed, Stream.DEFENSE) % 2**31
    if "seed" in accepted:
        params.setdefault("seed", seed)
    pre = []
    for index, item in enumerate(scenario.defense.pre):
        stage = {"name": item, "params": {}} if isinstance(item, str) else dict(item)
        stage_params = dict(stage.get("params") or {})
        stage_accepts = (
            aggregators.pre_accepts(stage["name"]) if isinstance(stage.get("name"), str) else set()
        )
        if "seed" in stage_accepts:
            stage_params.setdefault("seed", (seed + index + 1) % 2**31)
        if "f" in stage_accepts:
            stage_params.setdefault("f", default_f(scenario))
        pre.append({**stage, "params": stage_params})
    return aggregators.build_pipeline(name, params, pre)


def output_layer(model: nn.Module) -> tuple[int, int]:
    """``(out_features, in_features)`` of the model's last ``nn.Linear`` (its output layer).

    DeepSight reads the output layer from the end of the flat update, so that layer's
    parameters must be the model's last ones.

    Raises
    ------
    InvalidSettingError
        The model has no ``nn.Linear``, or its parameters do not end with the last one's.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    params = list(model.parameters())
    if not linears or linears[-1].bias is None:
        raise InvalidSettingError(
            "deepsight needs a model ending with nn.Linear (with bias); give output_size and "
            "penultimate_size in defense.params"
        )
    last = linears[-1]
    if len(params) < 2 or params[-1] is not last.bias or params[-2] is not last.weight:
        raise InvalidSettingError(
            "deepsight reads the output layer from the end of the update, but the model's "
            "parameters do not end with its last nn.Linear"
        )
    return last.out_features, last.in_features


def fltrust_rule(aggregator: aggregators.Aggregator) -> FLTrust | None:
    """The FLTrust rule inside ``aggregator`` (itself or a pipeline's rule), if any."""
    rule = aggregator.rule if isinstance(aggregator, Pipeline) else aggregator
    return rule if isinstance(rule, FLTrust) else None


@contextmanager
def scenario_key(path: str, value: Any) -> Iterator[None]:
    """Turn an error building a part from settings into a ScenarioError at ``path``."""
    try:
        yield
    except SETTING_ERRORS as e:
        reason = " ".join(str(e).split())[:200]
        raise ScenarioError(path, value, reason) from None


@dataclass
class ServerParts:
    """Everything the server runs besides Flower, built from one scenario.

    Attributes
    ----------
    fed : Federation
        The run's data, model factory, attack and malicious ids.
    aggregator : Aggregator
        The rule behind its pre-aggregation stages.
    adversary : AdversaryStage or None
        The colluding attack's stage, run on the checked updates before aggregation.
    root_update : RootUpdate or None
        FLTrust's server update from its root set (``None`` for other rules).
    data : ServerData
        The held-out set the global model is evaluated on and the probes measure on
        (FLTrust's root set taken out), and the root set.
    privacy : ServerPrivacy
        Central DP, the budget check and the clients' local-DP reports.
    probes : ProbeSet
        The probes the scenario configures.
    client_states : ClientStateMirror or None
        The server's copy of the clients' node states (for checkpoints and resumes).
    watermark : WaffleEmbedding or None
        WAFFLE embedding of each round's aggregate (``watermark:`` with ``embed: true``).
    secure : SecureAggregation or None
        SecAgg+ (``defense.secure_aggregation``): the server learns only the round's sum.
    """

    fed: Federation
    aggregator: aggregators.Aggregator
    adversary: AdversaryStage | None
    root_update: RootUpdate | None
    data: ServerData
    privacy: ServerPrivacy
    probes: ProbeSet
    client_states: ClientStateMirror | None
    watermark: WaffleEmbedding | None = None
    secure: SecureAggregation | None = None

    @classmethod
    def build(
        cls,
        fed: Federation,
        out_dir: Path | None = None,
        *,
        mirror_client_states: bool = False,
    ) -> ServerParts:
        """Build and validate the server's parts for ``fed.scenario``.

        Raises
        ------
        ScenarioError
            A part refuses its settings (the message names the scenario key).
        """
        scenario = fed.scenario
        defense = scenario.defense
        require_known("defense.aggregator", defense.aggregator, aggregators.names())
        for index, item in enumerate(defense.pre):
            name = item if isinstance(item, str) else item.get("name")
            require_known(f"defense.pre.{index}", name, aggregators.pre_names())
        key, value = (
            ("defense.pre", defense.pre) if defense.pre else ("defense.params", defense.params)
        )
        with scenario_key(key, value):
            model = fed.model("server") if defense.aggregator == "deepsight" else None
            aggregator = build_aggregator(scenario, model)
            aggregator.check_round(scenario.clients_per_round)
        adversary = None
        staged = fed.attack
        if isinstance(staged, UpdateAttack) and fed.strength is not None:
            staged = ServerSideUpdate(staged)  # the stage searches its strength
        if isinstance(staged, ColludingAttack):
            with scenario_key("attack.params", scenario.attack.params):
                staged.check_round(scenario.clients_per_round, max(1, default_f(scenario)))
            adversary = AdversaryStage(
                staged,
                fed.malicious,
                scenario.attack.knowledge,
                scenario.seed,
                active=scenario.attack.active,
                aggregator=aggregator,
                search=fed.strength,
            )
        x_test, y_test = fed.data.dataset.x_test, fed.data.dataset.y_test
        root_size = None
        if (fltrust := fltrust_rule(aggregator)) is not None:
            root_size = fltrust.root_size
            if not root_size < len(y_test):
                raise ScenarioError(
                    "defense.params.root_size",
                    root_size,
                    f"fewer than the {len(y_test)} held-out samples it is drawn from",
                )
        data = ServerData.split(x_test, y_test, root_size, scenario.seed)
        root_update = None if data.root is None else RootUpdate(fed, *data.root)
        with scenario_key("privacy.central_dp", scenario.privacy.central_dp):
            privacy = ServerPrivacy(scenario, fed.data, aggregator, fed.malicious)
        probes = ProbeSet.from_federation(fed, data, out_dir)
        return cls(
            fed=fed,
            aggregator=aggregator,
            adversary=adversary,
            root_update=root_update,
            data=data,
            privacy=privacy,
            probes=probes,
            client_states=ClientStateMirror(fed) if mirror_client_states else None,
            watermark=WaffleEmbedding.from_scenario(fed),
            secure=secure_aggregation(scenario, aggregator, adversary, probes),
        )

    def before_aggregate(self, global_weights: torch.Tensor, server_round: int) -> None:
        """Just before the rule runs: FLTrust's server update on the root set."""
        rule = fltrust_rule(self.aggregator)
        if rule is not None and self.root_update is not None:
            rule.server_update = self.root_update(global_weights, server_round)

    def after_aggregate(self, weights: torch.Tensor, server_round: int) -> torch.Tensor:
        """The new global weights from the rule's ``weights``: watermarked when asked for."""
        if self.watermark is None:
            return weights
        return self.watermark(weights, server_round)


def secure_aggregation(
    scenario: Scenario,
    aggregator: aggregators.Aggregator,
    adversary: AdversaryStage | None,
    probes: ProbeSet,
) -> SecureAggregation | None:
    """The run's SecAgg+ (``defense.secure_aggregation``), or ``None`` when it is off.

    Under secure aggregation the server sees only the round's sum (``groups: 1``) or ``k``
    random group sums (``groups: k``), so every part that needs single updates is refused,
    with why and what works instead: with one sum, a rule other than FedAvg and any
    ``defense.pre`` stage (robust rules and detectors); with groups, rules that follow
    clients across rounds (FoolsGold, FLDetector) and rules that cannot aggregate ``k``
    updates; always the colluding adversary stage (it reads the honest updates), central DP
    (it clips each update on the server) and probes whose attacker sees single updates.

    Raises
    ------
    ScenarioError
        A refused part, settings Flower's checks (and fedsim's) refuse, too many groups for
        the cohort, or the ``vectorized`` runtime (its batched replies carry clear updates).
    """
    block = scenario.defense.secure_aggregation
    if block is None and scenario.clients.verify_model:
        raise ScenarioError(
            "clients.verify_model",
            True,
            "defense.secure_aggregation: nodes compare model hashes during its key agreement; "
            "without it every hash a node sees is relayed by the server it would check",
        )
    if block is None:
        return None
    path = "defense.secure_aggregation"
    values = block.model_dump(exclude={"protocol", "groups"})
    try:
        settings = SecAggSettings(**values)
        settings.for_cohort(-(-scenario.clients_per_round // block.groups))  # the largest group
    except InvalidSettingError as e:
        reason = " ".join(str(e).split())
        named = [(reason.find(k), k) for k in values if k in reason]
        key = min(named)[1] if named else None
        raise ScenarioError(
            f"{path}.{key}" if key else path, values[key] if key else values, reason
        ) from None
    groups, per_round = block.groups, scenario.clients_per_round
    if per_round // groups < 2:
        raise ScenarioError(
            f"{path}.groups",
            groups,
            f"at most {per_round // 2} groups for {per_round} clients per round (a SecAgg+ "
            "group needs at least 2 nodes)",
        )
    why = "secure aggregation reveals only the sum of the round's updates"
    defense = scenario.defense
    if groups == 1 and defense.aggregator not in SECURE_RULES:
        raise ScenarioError(
            "defense.aggregator",
            defense.aggregator,
            f"{defense.aggregator} needs single updates, but {why}; use fedavg "
            "(with client-side defences such as local DP), or secure_aggregation.groups > 1 "
            "to run it on group sums",
        )
    if groups == 1 and defense.pre:
        raise ScenarioError(
            "defense.pre",
            defense.pre,
            f"pre-aggregation stages need single updates, but {why}; leave defense.pre empty "
            "and use fedavg, or set secure_aggregation.groups > 1",
        )
    if groups > 1 and defense.aggregator in CLIENT_TRACKING_RULES:
        raise ScenarioError(
            "defense.aggregator",
            defense.aggregator,
            f"{defense.aggregator} follows each client across rounds, but under secure "
            "aggregation with groups the server sees fresh random group sums each round; use "
            "a rule that ranks the updates of one round (krum, median, trimmed_mean, ...)",
        )
    if groups > 1:
        try:
            aggregator.check_round(groups)
        except InvalidSettingError as e:
            raise ScenarioError(
                f"{path}.groups",
                groups,
                f"the rule runs on the {groups} group sums: {' '.join(str(e).split())}",
            ) from None
    if adversary is not None:
        raise ScenarioError(
            "attack.name",
            scenario.attack.name,
            f"the colluding adversary stage reads the honest updates, but {why}; use a "
            "client-side attack",
        )
    if scenario.privacy.central_dp is not None:
        raise ScenarioError(
            "privacy.central_dp",
            "set",
            f"central DP clips each update on the server, but {why}; use privacy.local_dp",
        )
    for probe in probes.probes:
        config = getattr(probe, "config", None)
        if probe.threat_model == "update":  # the inversion probe's server attacks the sums
            if hasattr(config, "threat_model"):
                raise ScenarioError(
                    f"privacy.{probe.name}.threat_model",
                    config.threat_model,
                    f"its attacker sees single updates, but {why}; use threat_model: client "
                    "(the aggregate) or a global-model probe",
                )
            raise ScenarioError(  # e.g. the audit's gradient canaries under local DP
                f"privacy.{probe.name}",
                "set",
                f"it scores single client updates, but {why}; run it without secure aggregation",
            )
    if scenario.runtime == "vectorized":
        raise ScenarioError(
            "runtime",
            scenario.runtime,
            "not yet under defense.secure_aggregation: the vectorized runtime answers a round "
            "with one batch of clear updates; use inline or ray",
        )
    timeout = scenario.clients.timeout_s or 3600.0
    return SecureAggregation(
        settings, scenario.seed, timeout, groups, scenario.clients.verify_model
    )
