"""The Flower ``ClientApp``: honest local training on the client's partition.

Handlers (Message API):

- ``query.identify``: reply with this node's partition id (the server maps node ids to
  client ids once, at the start of a run).
- ``train``: load the global weights, run local SGD, reply with the update
  Δ = w_local − w_global (float64), the number of examples, the training loss and the
  client id.
- ``evaluate``: accuracy and loss of the global weights on the client's own partition.

The scenario comes from the factory argument (simulation) or from the run config key
``scenario`` (a path, under ``flwr run``).
"""

from __future__ import annotations

import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsim.config import Scenario, load_scenario
from fedsim.federation import Federation, federation_for
from fedsim.params import flat_params, from_array_record, load_flat_params, to_array_record
from fedsim.seeding import Stream, torch_generator
from fedsim.training import TrainSettings, evaluate, train_local

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
        global_weights = from_array_record(msg.content["arrays"], WEIGHTS_KEY)

        model = fed.model("client")
        load_flat_params(model, global_weights)
        x, y = fed.data.client(client_id)
        c = fed.scenario.clients
        settings = TrainSettings(c.local_epochs, c.batch_size, c.lr, c.momentum, c.weight_decay)
        generator = torch_generator(fed.scenario.seed, Stream.TRAIN, server_round, client_id)
        result = train_local(model, x, y, settings, generator)

        delta = flat_params(model).to(torch.float64) - global_weights.to(torch.float64)
        content = RecordDict(
            {
                "update": to_array_record(UPDATE_KEY, delta),
                "metrics": MetricRecord(
                    {
                        "partition-id": client_id,
                        "num-examples": result.num_examples,
                        "train-loss": result.loss,
                        "steps": result.steps,
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


# `flwr run .` entry point: the scenario path comes from the run config.
app = make_client_app()


