"""The Flower ``ClientApp``: honest local training on the client's partition.

Handlers (Message API):

- ``query.identify``: reply with this node's partition id (the server maps node ids to
  client ids once, at the start of a run).
- ``train``: load the global weights, run local SGD, reply with the update
  Δ = w_local − w_global (float64), the number of examples, the training loss and the
  client id. A malicious client with a local attack (stage ``data`` or ``update``) poisons
  its data before training and/or transforms its update before replying — all here, so these
  attacks also work in a real Flower deployment. Attacks that read the last global-model
  change (Neurotoxin) take it from the global weights the client saw last time, kept in its
  node state.
- ``evaluate``: accuracy and loss of the global weights on the client's own partition.

The scenario comes from the factory argument (simulation) or from the run config key
``scenario`` (a path, under ``flwr run``).
"""

from __future__ import annotations

import time

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.attacks.base import ClientAttack, DataPoisoning
from clients.state import LAST_GLOBAL_KEY, LEDGER_KEY, adopt_state
from fedsim.config import Scenario, load_scenario
from fedsim.faults import client_faults
from fedsim.federation import Federation, federation_for
from fedsim.params import flat_params, from_array_record, load_flat_params, to_array_record
from fedsim.privacy import PrivacyLedger, train_dp_sgd
from fedsim.privacy.local import local_dp_round
from fedsim.seeding import Stream, torch_generator
from fedsim.training import TrainResult, TrainSettings, evaluate, single_thread, train_local

__all__ = ["WEIGHTS_KEY", "UPDATE_KEY", "app", "make_client_app"]

WEIGHTS_KEY = "weights"
UPDATE_KEY = "update"


def make_client_app(scenario: Scenario | None = None) -> ClientApp:
    """Build the ClientApp for ``scenario`` (or for the run config's scenario file)."""
    app = ClientApp()

    def federation(context: Context) -> Federation:
        if scenario is not None:
            return federation_for(scenario)
        return federation_for(load_scenario(str(context.run_config["scenario"])))

    @app.query("identify")
    def identify(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({"partition-id": int(context.node_config["partition-id"])})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        fed = federation(context)
        client_id = int(context.node_config["partition-id"])
        server_round = int(msg.content["config"]["server-round"])
        adopt_state(msg.content, context.state)  # the state a resumed run hands back
        faults = client_faults(fed.scenario.faults, fed.scenario.seed, server_round, client_id)
        if faults.crash:
            raise RuntimeError(f"injected crash of client {client_id} (faults.crash)")
        if faults.straggler:
            time.sleep(fed.scenario.faults.straggler_delay_s)
        global_weights = from_array_record(msg.content["arrays"], WEIGHTS_KEY)

        model = fed.model("client")
        load_flat_params(model, global_weights)
        x, y = fed.data.client(client_id)
        attack = _local_attack(fed, client_id)
        attack_rng = torch_generator(fed.scenario.seed, Stream.ATTACK, server_round, client_id)
        if isinstance(attack, DataPoisoning):
            x, y = attack.poison(
                x,
                y,
                attacker_index=fed.attacker_index(client_id),
                num_attackers=len(fed.malicious),
                generator=attack_rng,
            )
        settings = TrainSettings.from_clients(fed.scenario.clients)
        generator = torch_generator(fed.scenario.seed, Stream.TRAIN, server_round, client_id)
        privacy_metrics: dict[str, float | list[float]] = {}
        if fed.scenario.privacy.local_dp is not None and client_id not in fed.malicious:
            result, privacy_metrics = _train_private(fed, context, model, x, y, generator)
        else:
            result = train_local(model, x, y, settings, generator, fed.data.dataset.augment)

        delta = flat_params(model).to(torch.float64) - global_weights.to(torch.float64)
        if attack is not None:
            reference = (
                _last_global_change(context, global_weights) if attack.uses_reference else None
            )
            delta = attack.transform_update(delta, reference=reference, generator=attack_rng)
        content = RecordDict(
            {
                "update": to_array_record(UPDATE_KEY, delta),
                "metrics": MetricRecord(
                    {
                        "partition-id": client_id,
                        "num-examples": result.num_examples,
                        "train-loss": result.loss,
                        "steps": result.steps,
                        **privacy_metrics,
                    }
                ),
            }
        )
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate_global(msg: Message, context: Context) -> Message:
        fed = federation(context)
        client_id = int(context.node_config["partition-id"])
        model = fed.model("client")
        load_flat_params(model, from_array_record(msg.content["arrays"], WEIGHTS_KEY))
        x, y = fed.data.client(client_id)
        result = evaluate(model, x, y)
        metrics = MetricRecord(
            {
                "partition-id": client_id,
                "num-examples": result.num_examples,
                "accuracy": result.accuracy,
                "loss": result.loss,
            }
        )
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _train_private(
    fed: Federation,
    context: Context,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
) -> tuple[TrainResult, dict[str, float | list[float]]]:
    """Train with DP-SGD and add the round to the client's ledger, kept in its node state.

    Returns the training result and the privacy report for the reply: the cumulative ledger
    (``dp-history``) and the client's ε over every DP-SGD step it has taken so far
    (``dp-epsilon``).
    """
    local, clients = fed.scenario.privacy.local_dp, fed.scenario.clients
    assert local is not None
    plan = local_dp_round(fed.scenario, len(y))
    device = next(model.parameters()).device
    with single_thread(device):
        dp = train_dp_sgd(
            model,
            x,
            y,
            epochs=clients.local_epochs,
            batch_size=clients.batch_size,
            lr=clients.lr,
            momentum=clients.momentum,
            weight_decay=clients.weight_decay,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=local.max_grad_norm,
            poisson_sampling=local.poisson_sampling,
            generator=generator,
            device=device,
        )
    stored = context.state.config_records.get(LEDGER_KEY)
    ledger = PrivacyLedger.from_list(stored["history"] if stored is not None else [])
    ledger.record(plan.noise_multiplier, dp.sample_rate, dp.steps)
    context.state[LEDGER_KEY] = ConfigRecord({"history": ledger.to_list()})
    result = TrainResult(loss=dp.loss, steps=dp.steps, num_examples=dp.num_examples)
    report = {
        "dp-history": ledger.to_list(),
        "dp-epsilon": ledger.epsilon(local.delta, local.accountant),
        "dp-noise-multiplier": plan.noise_multiplier,
    }
    return result, report


def _local_attack(fed: Federation, client_id: int) -> ClientAttack | None:
    """Return the client's local attack, if it is malicious and the attack runs on clients."""
    if client_id in fed.malicious and isinstance(fed.attack, ClientAttack):
        return fed.attack
    return None


def _last_global_change(context: Context, global_weights: torch.Tensor) -> torch.Tensor | None:
    """w_global(now) − w_global(last time this client trained); ``None`` the first time."""
    previous = context.state.array_records.get(LAST_GLOBAL_KEY)
    context.state[LAST_GLOBAL_KEY] = to_array_record(LAST_GLOBAL_KEY, global_weights)
    if previous is None:
        return None
    previous_weights = from_array_record(previous, LAST_GLOBAL_KEY)
    return global_weights.to(torch.float64) - previous_weights.to(torch.float64)


# `flwr run .` entry point: the scenario path comes from the run config.
app = make_client_app()
