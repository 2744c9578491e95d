"""fedsim's SecAgg+ sums what Flower's own SecAgg+ (workflow + mod) sums, on the same inputs.

Flower's legacy path runs in process on fedsim's InlineGrid: a ServerApp whose main runs
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` with a FedAvg strategy, against a
ClientApp with ``secaggplus_mod`` whose NumPyClient returns fixed arrays. Each client reports
``num_examples = max_weight``, so Flower's factor ``n_i / max_weight`` is 1 and its aggregate is
the plain mean of the clipped arrays; fedsim's ``secure_sum / n`` must match it within both
quantization bounds (``2c/Q`` each for a mean).
"""

from __future__ import annotations

import copy
import random

import numpy as np
from flwr.app import Message
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from fedsim.run.runtimes.inline import InlineGrid, run_on_grid
from fedsim.secagg import SecAggSettings, secure_sum, sum_error_bound

NUM_NODES, MAX_WEIGHT, SHAPES = 5, 1000.0, [(4, 3), (8,)]  # d = 20


def client_arrays(seed: int = 7) -> list[list[np.ndarray]]:
    """Each client's fixed arrays, in [-2, 2] (never clipped at c = 8)."""
    rng = np.random.default_rng(seed)
    return [[rng.uniform(-2, 2, shape) for shape in SHAPES] for _ in range(NUM_NODES)]


class CopyingGrid(InlineGrid):
    """fedsim's in-process grid, handing each node its own copy of a message, as a wire does.

    Flower's SecAgg+ setup stage sends one ``RecordDict`` object to every node and
    ``secaggplus_mod`` pops the stage key from it: shared in process, the second node would
    find no stage.
    """

    def _execute(self, msg: Message) -> Message:
        return super()._execute(copy.deepcopy(msg))


class FixedClient(NumPyClient):
    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays

    def fit(self, parameters, config):  # noqa: ANN001, ANN201
        return self.arrays, int(MAX_WEIGHT), {}


class RecordingFedAvg(FedAvg):
    """FedAvg that keeps what it aggregated."""

    aggregated: list[np.ndarray] | None = None

    def aggregate_fit(self, server_round, results, failures):  # noqa: ANN001, ANN201
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        RecordingFedAvg.aggregated = parameters_to_ndarrays(parameters)
        return parameters, metrics


def flower_secaggplus_mean(arrays: list[list[np.ndarray]], settings: SecAggSettings) -> np.ndarray:
    """Flower's SecAgg+ FedAvg aggregate of ``arrays`` (one round), flattened."""

    def client_fn(context: Context):  # noqa: ANN202
        return FixedClient(arrays[int(context.node_config["partition-id"])]).to_client()

    server_app = ServerApp()

    @server_app.main()
    def main(grid, context: Context) -> None:  # noqa: ANN001
        strategy = RecordingFedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=NUM_NODES,
            min_available_clients=NUM_NODES,
            initial_parameters=ndarrays_to_parameters([np.zeros(s) for s in SHAPES]),
        )
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)
        workflow = SecAggPlusWorkflow(
            num_shares=settings.num_shares,
            reconstruction_threshold=settings.reconstruction_threshold,
            max_weight=MAX_WEIGHT,
            clipping_range=settings.clipping_range,
            quantization_range=settings.quantization_range,
            modulus_range=settings.modulus_range,
        )
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)

    RecordingFedAvg.aggregated = None
    client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
    run_on_grid(server_app, CopyingGrid(client_app, NUM_NODES, seed=0))
    assert RecordingFedAvg.aggregated is not None, "Flower's SecAgg+ round did not finish"
    return np.concatenate([a.ravel() for a in RecordingFedAvg.aggregated])


def test_fedsim_secure_sum_matches_flowers_secaggplus() -> None:
    settings = SecAggSettings()  # Flower's defaults: 0.5 shares, 0.6 threshold, c = 8
    arrays = client_arrays()
    random.seed(0)  # Flower shuffles its neighbour ring with `random`
    np.random.seed(0)  # and rounds with NumPy's global state
    flower = flower_secaggplus_mean(arrays, settings)

    vectors = [np.concatenate([a.ravel() for a in client]) for client in arrays]
    fedsim = secure_sum(vectors, settings, seed=0).total / NUM_NODES

    plain = np.mean(vectors, axis=0)
    step = sum_error_bound(NUM_NODES, settings) / NUM_NODES  # one 2c/Q step, for a mean
    assert np.abs(flower - plain).max() < step
    assert np.abs(fedsim - plain).max() < step
    assert np.abs(fedsim - flower).max() < 2 * step
