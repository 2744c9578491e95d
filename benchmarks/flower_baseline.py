"""The throughput benchmark's peer: a Flower app written the way quickstart-pytorch writes one.

Flower's quickstart-pytorch example (Message API) builds everything inside each call: the
ClientApp's ``train`` makes a new ``Net``, loads the global weights from the message's
state-dict ``ArrayRecord``, calls ``load_data(partition_id, num_partitions)`` — which keeps
the raw dataset cached but makes the partition's tensors, ``TensorDataset`` and shuffling
``DataLoader`` anew — trains, and replies with the whole state dict. The ServerApp runs
Flower's stock ``FedAvg``. Here the data are scikit-learn's digits (nothing can be downloaded),
partitioned as fedsim partitions them so both sides train the same clients, and the model is
fedsim's ``cnn`` with the same optimiser, so the two differ only in framework overhead.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch.utils.data import DataLoader, TensorDataset

BATCH_SIZE, LR, MOMENTUM, SEED = 32, 0.05, 0.9, 0


def pick_device(device: str) -> torch.device:
    """The quickstart's choice: the GPU when there is one (unless told ``cpu``)."""
    return torch.device("cuda:0" if device != "cpu" and torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=1)
def _raw_partitions(num_clients: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], Any]:
    """The cached raw dataset (as quickstart caches its ``FederatedDataset``): numpy arrays."""
    from fedsim.data import federated_data
    from fedsim.scenario import DataConfig

    config = DataConfig(dataset="digits", partition="iid", num_clients=num_clients)
    data = federated_data(config, SEED)
    parts = [tuple(t.numpy() for t in data.client(c)) for c in range(num_clients)]
    test = (data.dataset.x_test.numpy(), data.dataset.y_test.numpy())
    return parts, test


def load_data(partition_id: int, num_partitions: int) -> DataLoader:
    """A fresh DataLoader over the client's partition (built on every call, as quickstart does)."""
    parts, _ = _raw_partitions(num_partitions)
    x, y = parts[partition_id]
    dataset = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)


def new_net() -> torch.nn.Module:
    """A new instance of the model (fedsim's ``cnn`` for digits)."""
    from fedsim.models import build_model

    return build_model("cnn", (1, 8, 8), 10)


def train(net: torch.nn.Module, loader: DataLoader, device: torch.device) -> float:
    """One local epoch of SGD; the mean training loss."""
    net.to(device)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    total, batches = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    return total / max(batches, 1)


def test(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Accuracy on a held-out set, through a DataLoader."""
    loader = DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=128)
    net.to(device)
    net.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in loader:
            predicted = net(images.to(device)).argmax(dim=1)
            correct += int((predicted == labels.to(device)).sum())
    return correct / len(y)


def client_app(num_clients: int, device: str) -> ClientApp:
    """The ClientApp: a new model and DataLoader in every call."""
    app = ClientApp()

    @app.train()
    def client_train(msg: Message, context: Context) -> Message:
        net = new_net()
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        dev = pick_device(device)
        loader = load_data(
            int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
        )
        loss = train(net, loader, dev)
        metrics = MetricRecord({"train_loss": loss, "num-examples": len(loader.dataset)})
        content = RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics})
        return Message(content=content, reply_to=msg)

    return app


def server_app(num_clients: int, rounds: int, device: str, timing: dict[str, float]) -> ServerApp:
    """The ServerApp: stock FedAvg over every client, central evaluation after each round.

    Writes ``round_seconds`` (each round's training, aggregation and evaluation, timed from
    one central evaluation to the next) and the final ``accuracy`` into ``timing``.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        while len(list(grid.get_node_ids())) < num_clients:  # wait for every node
            time.sleep(0.05)
        _, (x_test, y_test) = _raw_partitions(num_clients)
        dev = pick_device(device)

        ends: list[float] = []

        def global_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            net = new_net()
            net.load_state_dict(arrays.to_torch_state_dict())
            timing["accuracy"] = test(net, x_test, y_test, dev)
            ends.append(time.perf_counter())
            return MetricRecord({"accuracy": timing["accuracy"]})

        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=num_clients,
            min_available_nodes=num_clients,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(new_net().state_dict()),
            train_config=ConfigRecord({"lr": LR}),
            num_rounds=rounds,
            evaluate_fn=global_evaluate,
        )
        timing["round_seconds"] = [b - a for a, b in zip(ends, ends[1:], strict=False)]

    return app
