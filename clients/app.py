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
  node state. The steps before and after training are :mod:`clients.train_round`'s, shared
  with the vectorized runtime.
- ``query.secagg_setup``, ``query.secagg_share_keys``, ``query.secagg_unmask`` and a train
  message carrying SecAgg+ shares: secure aggregation's stages
  (:mod:`clients.secure_aggregation`); the train reply then holds the masked update.
- ``evaluate``: accuracy and loss of the global weights on the client's own partition.

The scenario comes from the factory argument (simulation) or from the run config key
``scenario`` (a path, under ``flwr run``).
"""

from __future__ import annotations

import time

import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.personalization import train_personal
from clients.secure_aggregation import (
    masked_train_reply,
    setup_reply,
    share_keys_reply,
    unmask_reply,
)
from clients.train_round import (
    TrainJob,
    finish_train,
    global_weights_of,
    record_dp_round,
    start_train,
)
from fedsim.federation import Federation, federation_for
from fedsim.params import flat_params, load_flat_params
from fedsim.privacy import DPSettings, train_dp_sgd
from fedsim.protocol import (
    IDENTIFY,
    METRICS,
    NUM_EXAMPLES,
    PARTITION_ID,
    SECAGG_KEY,
    SECAGG_SETUP,
    SECAGG_SHARE_KEYS,
    SECAGG_UNMASK,
)
from fedsim.scenario import Scenario, load_scenario, scenario_path
from fedsim.training import TrainResult, evaluate, single_thread, task_loss, train_local

__all__ = ["app", "make_client_app"]


def make_client_app(scenario: Scenario | None = None) -> ClientApp:
    """Build the ClientApp for ``scenario`` (or for the run config's scenario file)."""
    app = ClientApp()
    built: list[Federation] = []  # the scenario's federation, looked up on the first call

    def federation(context: Context) -> Federation:
        if scenario is None:
            return federation_for(load_scenario(scenario_path(str(context.run_config["scenario"]))))
        if not built:
            built.append(federation_for(scenario))
        return built[0]

    @app.query(IDENTIFY)
    def identify(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({PARTITION_ID: int(context.node_config["partition-id"])})
        return Message(RecordDict({METRICS: metrics}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        fed = federation(context)
        job = start_train(fed, msg, context)
        if job.straggler:
            time.sleep(fed.scenario.faults.straggler_delay_s)
        model = fed.model("client")
        load_flat_params(model, job.global_weights)
        extra: dict[str, float | list[float]] = {}  # the privacy report, personal accuracy
        if fed.scenario.clients.personalization is not None:  # shared part out, personal kept
            local, result, personal_metrics = train_personal(job, context, model)
            extra = dict(personal_metrics)
        elif job.dp is not None:
            result = _train_private(job, model)
            extra = record_dp_round(context, job)
            local = flat_params(model)
        else:
            loss = None
            if fed.tasks is not None:  # the sum of the losses of the tasks it holds
                loss = task_loss(fed.tasks, fed.client_tasks(job.client_id))
            augment = fed.data.dataset.augment
            result = train_local(
                model, job.x, job.y, job.settings, job.generator(), augment, job.adversarial, loss
            )
            local = flat_params(model)
        reply = finish_train(msg, context, job, local, result, extra)
        if SECAGG_KEY in msg.content:  # secure aggregation: mask the update
            return masked_train_reply(fed, msg, context, reply)
        return reply

    @app.query(SECAGG_SETUP)
    def secagg_setup(msg: Message, context: Context) -> Message:
        return setup_reply(federation(context), msg, context)

    @app.query(SECAGG_SHARE_KEYS)
    def secagg_share_keys(msg: Message, context: Context) -> Message:
        return share_keys_reply(msg, context)

    @app.query(SECAGG_UNMASK)
    def secagg_unmask(msg: Message, context: Context) -> Message:
        return unmask_reply(msg, context)

    @app.evaluate()
    def evaluate_global(msg: Message, context: Context) -> Message:
        fed = federation(context)
        client_id = int(context.node_config["partition-id"])
        model = fed.model("client")
        load_flat_params(model, global_weights_of(msg))
        x, y = fed.data.client(client_id)
        result = evaluate(model, x, y)
        metrics = MetricRecord(
            {
                PARTITION_ID: client_id,
                NUM_EXAMPLES: result.num_examples,
                "accuracy": result.accuracy,
                "loss": result.loss,
            }
        )
        return Message(RecordDict({METRICS: metrics}), reply_to=msg)

    return app


def _train_private(job: TrainJob, model: torch.nn.Module) -> TrainResult:
    """Train ``model`` in place with DP-SGD (Opacus) on the job's data, with its round's σ."""
    local, settings = job.fed.scenario.privacy.local_dp, job.settings
    if local is None or job.dp is None:
        raise ValueError(f"client {job.client_id} does not train with DP-SGD this round")
    device = next(model.parameters()).device
    with single_thread(device):
        dp = train_dp_sgd(
            model,
            job.x,
            job.y,
            settings,
            DPSettings(local.max_grad_norm, local.poisson_sampling),
            noise_multiplier=job.dp.noise_multiplier,
            generator=job.generator(),
            device=device,
            adversarial=job.adversarial,
            inserted=job.inserted,
        )
    return TrainResult(loss=dp.loss, steps=dp.steps, num_examples=dp.num_examples)


# `flwr run .` entry point: the scenario path comes from the run config.
app = make_client_app()
