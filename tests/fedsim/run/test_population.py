"""Cross-device populations: node contexts on demand, the client–node directory, a 200k run."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from flwr.app import Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from clients.app import make_client_app
from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.protocol import PartitionDirectory
from fedsim.run.runner import preflight
from fedsim.run.runtimes.inline import InlineGrid
from fedsim.run.runtimes.vectorized import VectorizedGrid
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, numpy_rng
from server.app import identify_clients, run_server
from server.sampling import sample_clients
from tests.conftest import RecordingObserver, make_scenario


def old_node_ids(num_nodes: int, seed: int) -> list[int]:
    """Node ids by partition id, as InlineGrid drew them when it made every context up front."""
    offsets = numpy_rng(seed, Stream.NODE_IDS).permutation(num_nodes)
    return [10_000 + 17 * int(offset) for offset in offsets]


def test_a_million_node_grid_makes_no_context_until_asked() -> None:
    grid = InlineGrid(ClientApp(), 1_000_000, seed=0)
    assert isinstance(grid, PartitionDirectory)
    assert grid.num_partitions == 1_000_000 and grid.contexts_made == 0

    node = grid.node_id(123_456)
    context = grid.context(node)

    assert grid.contexts_made == 1 and grid.context(node) is context
    assert context.node_id == node and context.node_config["partition-id"] == 123_456
    assert context.node_config["num-partitions"] == 1_000_000
    assert grid.partition_id(node) == 123_456
    assert grid.partition_id(node + 1) is None  # not on the 10,000 + 17·k lattice
    assert grid.partition_id(10_000 + 17 * 1_000_000) is None  # past the last node
    with pytest.raises(KeyError):
        grid.node_id(1_000_000)
    with pytest.raises(KeyError):
        grid.context(node + 1)


@pytest.mark.parametrize(("num_nodes", "seed"), [(1, 0), (50, 0), (50, 3), (997, 11)])
def test_node_ids_are_the_ones_drawn_before(num_nodes: int, seed: int) -> None:
    expected = old_node_ids(num_nodes, seed)
    grid = InlineGrid(ClientApp(), num_nodes, seed)

    assert list(grid.get_node_ids()) == expected
    assert [grid.node_id(i) for i in range(num_nodes)] == expected
    assert [grid.partition_id(n) for n in expected] == list(range(num_nodes))
    assert [grid.context(n).node_config["partition-id"] for n in expected] == list(range(num_nodes))


class HandshakeOnly(Grid):
    """The same nodes behind a grid that is no directory: the server must ask each node."""

    def __init__(self, grid: InlineGrid) -> None:
        self.grid = grid

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.grid.send_and_receive(messages, timeout=timeout)

    # Unused by the handshake.
    run = set_run = create_message = push_messages = pull_messages = None  # type: ignore[assignment]


def test_directory_and_handshake_give_the_same_client_node_map() -> None:
    scenario = make_scenario(**{"data.num_clients": 12})
    handshake_grid = InlineGrid(make_client_app(scenario), 12, scenario.seed)
    directory_grid = InlineGrid(make_client_app(scenario), 12, scenario.seed)
    assert not isinstance(HandshakeOnly(handshake_grid), PartitionDirectory)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1  # for Message()

    asked = identify_clients(HandshakeOnly(handshake_grid), 12)
    looked_up = identify_clients(directory_grid, 12)

    assert dict(looked_up.to_node) == dict(asked.to_node) and len(asked.to_node) == 12
    assert dict(looked_up.to_client) == dict(asked.to_client)
    assert looked_up.to_client.get(1, -1) == asked.to_client.get(1, -1) == -1
    assert handshake_grid.contexts_made == 12  # every node answered query.identify
    assert directory_grid.contexts_made == 0


def test_a_directory_of_the_wrong_size_fails_with_the_fix() -> None:
    from fedsim.errors import RunError

    with pytest.raises(RunError, match="data.num_clients = 5 but the federation has 4"):
        identify_clients(InlineGrid(ClientApp(), 4), 5)


@pytest.mark.parametrize("runtime", ["inline", "vectorized"])
def test_a_200k_population_makes_contexts_for_sampled_clients_only(runtime: str) -> None:
    scenario = make_scenario(
        runtime=runtime,
        rounds=2,
        data={
            "dataset": "synthetic",
            "partition": "iid",
            "num_clients": 200_000,
            "params": {"num_samples": 250_000, "image_size": 2, "num_classes": 4},
        },
        model={"name": "mlp", "params": {"hidden": 8}},
        **{"clients.per_round": 20, "clients.batch_size": 4},
    )
    app = make_client_app(scenario)
    grid = (
        InlineGrid(app, 200_000, scenario.seed)
        if runtime == "inline"
        else VectorizedGrid(app, scenario)
    )
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 1
    observer = RecordingObserver()

    summary = run_server(grid, scenario, observer)

    assert summary["rounds"] == 2
    sampled = [set(sample_clients(scenario, r)) for r in (1, 2)]
    assert [set(row["sampled"]) for row in observer.rounds] == sampled
    assert all(len(row["replied"]) == 20 and not row["failed"] for row in observer.rounds)
    assert grid.contexts_made == len(sampled[0] | sampled[1])


def test_local_dp_preflight_names_the_first_client_too_small() -> None:
    def scenario(batch_size: int) -> Scenario:
        return make_scenario(
            data={"dataset": "synthetic", "num_clients": 12, "params": {"num_samples": 43}},
            model={"name": "mlp", "params": {"hidden": 4}},
            privacy={"local_dp": {"noise_multiplier": 1.0}},
            **{"clients.batch_size": batch_size},
        )

    data = federation_for(scenario(2)).data
    sizes = [len(data.client(c)[1]) for c in range(12)]  # the per-client loop it replaces
    assert len(set(sizes)) == 2  # np.array_split: the first clients have one more
    first_small = next(c for c in range(12) if sizes[c] < max(sizes))
    preflight(scenario(min(sizes)))
    with pytest.raises(ScenarioError) as caught:
        preflight(scenario(max(sizes)))
    assert f"smallest honest client's {min(sizes)} examples (client {first_small})" in str(
        caught.value
    )
