"""The vectorized runtime against the inline one: same replies, same runs, same refusals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from clients.app import make_client_app
from fedsim.cli import main
from fedsim.federation import federation_for
from fedsim.models.registry import MODELS
from fedsim.protocol import (
    UPDATE_BATCH_KEY,
    WEIGHTS_KEY,
    from_array_record,
    published_update_batch,
    to_array_record,
)
from fedsim.results import read_metrics
from fedsim.run.runner import run_scenario
from fedsim.run.runtimes.inline import InlineGrid
from fedsim.run.runtimes.vectorized import VectorizedGrid
from fedsim.scenario import Scenario
from server.app import run_server
from tests.conftest import RecordingObserver, make_scenario

ATOL = 1e-5  # updates are O(1e-2 .. 1); the batched kernels only sum in another order
RTOL = 1e-4

CASES: dict[str, dict[str, Any]] = {
    "honest-iid": {},
    "dirichlet-momentum-weight-decay": {
        "data.partition": "dirichlet",
        "data.alpha": 0.3,
        "data.num_clients": 6,
        "clients.per_round": 6,
        "clients.local_epochs": 2,
        "clients.batch_size": 16,
        "clients.weight_decay": 5e-3,
    },
    "label-flip": {"attack": {"name": "label_flip", "count": 2}},
    "backdoor-boost-neurotoxin": {
        "attack": {"name": "backdoor", "count": 2, "params": {"boost": 3, "neurotoxin": 0.2}}
    },
    "dba": {"attack": {"name": "dba", "count": 2}},
    "sign-flip": {"attack": {"name": "sign_flip", "count": 2, "params": {"scale": 2.0}}},
    "scaling": {"attack": {"name": "scaling", "count": 1, "params": {"factor": 5.0}}},
    "gaussian": {"attack": {"name": "gaussian", "count": 1}},
    "local-dp-poisson": {  # honest clients use DP-SGD, the malicious one plain SGD
        "privacy": {"local_dp": {"noise_multiplier": 1.0, "max_grad_norm": 0.5}},
        "clients.batch_size": 16,
        "attack": {"name": "label_flip", "count": 1},
    },
    "local-dp-shuffled-calibrated": {  # σ calibrated per client: sizes differ
        "privacy": {"local_dp": {"target_epsilon": 5.0, "poisson_sampling": False}},
        "data.partition": "dirichlet",
        "data.alpha": 1.0,
        "clients.batch_size": 16,
        "clients.momentum": 0.5,
    },
}


Said = str | tuple[torch.Tensor, dict[str, Any]]
"""What a client's reply says: its error, or its update and metrics."""


def train_round(
    grid: InlineGrid, scenario: Scenario, server_round: int, weights: torch.Tensor
) -> dict[int, Said]:
    """Send every client a round's train message, as the strategy does; what each replied."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 1
    client_of = {n: int(grid.context(n).node_config["partition-id"]) for n in grid.get_node_ids()}
    content = RecordDict(
        {
            "arrays": to_array_record(WEIGHTS_KEY, weights),
            "config": ConfigRecord({"server-round": server_round}),
        }
    )
    messages = [
        Message(content, dst_node_id=node, message_type=MessageType.TRAIN) for node in client_of
    ]
    timeout = scenario.clients.timeout_s or 3600.0
    replies = grid.send_and_receive(messages, timeout=timeout)
    said: dict[int, Said] = {}
    for reply in replies:  # read now: the next round withdraws a published batch
        for node, what in each_client_said(reply).items():
            said[client_of[node]] = what
    return said


def each_client_said(reply: Message) -> dict[int, Said]:
    """What each client a reply answers for said (a batch reply answers for many), by node."""
    sender = reply.metadata.src_node_id
    if reply.has_error():
        return {sender: reply.error.reason}
    if UPDATE_BATCH_KEY not in reply.content:
        update = from_array_record(reply.content["update"], "update")
        return {sender: (update, dict(reply.content["metrics"]))}
    reference = reply.content[UPDATE_BATCH_KEY]
    batch = published_update_batch(str(reference["batch"]))
    assert batch is not None
    nodes = list(batch.together) if reference["together"] else [sender]
    return {
        n: (batch.updates[batch.rows[n]].clone(), dict(batch.metrics[batch.rows[n]])) for n in nodes
    }


def two_rounds(grid: InlineGrid, scenario: Scenario) -> dict[int, Said]:
    """Round 1 from the initial weights, round 2 from perturbed ones (Neurotoxin's reference)."""
    start = federation_for(scenario).initial_weights()
    train_round(grid, scenario, 1, start)
    moved = start + 0.01 * torch.randn(start.shape, generator=torch.Generator().manual_seed(0))
    return train_round(grid, scenario, 2, moved)


def compare_replies(inline: dict[int, Said], vectorized: dict[int, Said]) -> float:
    """Assert the two runtimes' clients said the same; return the largest update difference."""
    assert sorted(inline) == sorted(vectorized)
    worst = 0.0
    for client, said in inline.items():
        other = vectorized[client]
        assert isinstance(said, str) == isinstance(other, str)
        if isinstance(said, str) or isinstance(other, str):
            assert said == other  # the same error
            continue
        a, ma, b, mb = said[0], dict(said[1]), other[0], dict(other[1])
        assert a.dtype == b.dtype == torch.float64 and a.shape == b.shape
        worst = max(worst, float((a - b).abs().max()))
        assert torch.allclose(a, b, rtol=RTOL, atol=ATOL), (client, float((a - b).abs().max()))
        assert sorted(ma) == sorted(mb)
        assert math.isclose(ma.pop("train-loss"), mb.pop("train-loss"), rel_tol=RTOL)
        assert ma == mb  # ids, counts, steps, DP ledger, ε and σ exactly
    return worst


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_reply_matches_the_inline_runtime(case: str) -> None:
    scenario = make_scenario(**CASES[case])
    n = scenario.data.num_clients
    inline = two_rounds(InlineGrid(make_client_app(scenario), n, scenario.seed), scenario)
    vec_scenario = scenario.model_copy(update={"runtime": "vectorized"})
    vectorized = two_rounds(VectorizedGrid(make_client_app(scenario), vec_scenario), scenario)
    assert compare_replies(inline, vectorized) < ATOL
    if scenario.attack.name != "none":
        malicious = federation_for(scenario).malicious
        assert any(c in malicious for c in vectorized)


def test_the_chunk_size_does_not_change_the_replies() -> None:
    scenario = make_scenario(**CASES["dirichlet-momentum-weight-decay"])
    replies = []
    for chunk_size in (1, 4, None):
        changed = scenario.model_copy(
            update={"vectorized": scenario.vectorized.model_copy(update={"chunk_size": chunk_size})}
        )
        replies.append(two_rounds(VectorizedGrid(make_client_app(scenario), changed), scenario))
    assert compare_replies(replies[0], replies[1]) < ATOL
    assert compare_replies(replies[0], replies[2]) < ATOL


def run(scenario: Scenario, tmp_path: Path, runtime: str) -> list[dict[str, Any]]:
    changed = scenario.model_copy(update={"runtime": runtime})
    run_scenario(changed, tmp_path / runtime, show_progress=False)
    return read_metrics(tmp_path / runtime)


def assert_same_run(inline: list[dict[str, Any]], vectorized: list[dict[str, Any]]) -> None:
    test_size = len(federation_for(make_scenario()).data.dataset.y_test)
    assert len(inline) == len(vectorized)
    for a, b in zip(inline, vectorized, strict=True):
        for key in ("round", "sampled", "malicious", "replied", "dropped", "timed_out"):
            assert a[key] == b[key], key
        assert a["failed"] == b["failed"] and a["accepted"] == b["accepted"]
        assert abs(a["accuracy"] - b["accuracy"]) <= 1 / test_size + 1e-12
        assert math.isclose(a["loss"], b["loss"], rel_tol=RTOL)
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=RTOL)
        if "asr" in a:
            assert abs(a["asr"] - b["asr"]) <= 1 / test_size + 1e-12


def test_honest_fedavg_run_matches_inline(tmp_path: Path) -> None:
    scenario = make_scenario(rounds=3, **{"clients.per_round": 3})
    inline, vectorized = run(scenario, tmp_path, "inline"), run(scenario, tmp_path, "vectorized")
    assert_same_run(inline, vectorized)
    assert vectorized[-1]["accuracy"] > 0.5


def test_backdoor_run_under_krum_matches_inline(tmp_path: Path) -> None:
    scenario = make_scenario(
        rounds=2,
        attack={"name": "backdoor", "count": 1, "params": {"boost": 2}},
        defense={"aggregator": "multikrum", "params": {"f": 1}},
    )
    inline, vectorized = run(scenario, tmp_path, "inline"), run(scenario, tmp_path, "vectorized")
    assert_same_run(inline, vectorized)
    assert all(r["accepted"] is not None and "asr" in r for r in vectorized)


def test_crashes_and_stragglers_are_the_inline_ones(tmp_path: Path) -> None:
    scenario = make_scenario(
        rounds=2,
        **{
            "data.num_clients": 6,
            "clients.per_round": 6,
            "clients.timeout_s": 0.5,
            "faults.crash": 0.2,
            "faults.straggler": 0.4,
            "faults.straggler_delay_s": 1.0,
        },
    )
    inline, vectorized = run(scenario, tmp_path, "inline"), run(scenario, tmp_path, "vectorized")
    assert_same_run(inline, vectorized)
    assert sum(len(r["failed"]) for r in vectorized) > 0
    assert sum(len(r["timed_out"]) for r in vectorized) > 0
    assert all("injected crash" in reason for r in vectorized for reason in r["failed"].values())


def test_same_seed_same_numbers() -> None:
    scenario = make_scenario(rounds=2, runtime="vectorized", **{"clients.per_round": 3})

    def once() -> list[tuple]:
        observer = RecordingObserver()
        grid = VectorizedGrid(make_client_app(scenario), scenario)
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 1
        run_server(grid, scenario, observer)
        return [(r["accuracy"], r["loss"], r["train_loss"], r["sampled"]) for r in observer.rounds]

    assert once() == once()


class _BatchNormNet(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.BatchNorm1d(16))
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))


class _BranchingNet(nn.Module):
    """Branches on a tensor value: fine one client at a time, not traceable by vmap."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        self.head = nn.Linear(c * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(x.flatten(1))
        return out if out.sum() > 0 else -out


@pytest.mark.parametrize(
    ("model", "fragment"),
    [(_BatchNormNet, "BatchNorm1d: it mixes the samples"), (_BranchingNet, "batched step failed")],
)
def test_models_it_cannot_batch_are_refused_at_start_up(
    model: type[nn.Module],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"unbatchable-{model.__name__}"  # federations are cached by scenario
    monkeypatch.setitem(MODELS._items, name, model)
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: v\nrounds: 1\nruntime: vectorized\ndevice: cpu\n"
        f"data: {{num_clients: 3}}\nmodel: {{name: {name}}}\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fedsim: error: model.name:")
    assert fragment in err and "runtime: inline" in err
    assert not (tmp_path / "run").exists()
    inline = str(path.read_text()).replace("runtime: vectorized", "runtime: inline")
    path.write_text(inline)  # the inline runtime trains the same model
    assert main(["run", str(path), "--out", str(tmp_path / "inline"), "--no-progress"]) == 0


def test_a_resumed_run_hands_the_node_state_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DP ledgers and Neurotoxin's last global model live in node state: resume restores them."""
    import fedsim.run.runtimes.vectorized as runtime
    from tests.fedsim.run.test_resume import _without_timing, _write

    path = _write(
        tmp_path,
        {
            "runtime": "vectorized",
            "clients": {"per_round": 3},
            "attack": {"name": "backdoor", "count": 2, "params": {"neurotoxin": 0.5}},
            "privacy": {"local_dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}},
        },
    )
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main(["run", str(path), "--out", str(full), "--no-progress"]) == 0
    real = runtime.start_train

    def interrupted(fed, msg, context):  # noqa: ANN001, ANN202
        if int(msg.content["config"]["server-round"]) == 4:
            raise KeyboardInterrupt
        return real(fed, msg, context)

    with monkeypatch.context() as patch:
        patch.setattr(runtime, "start_train", interrupted)
        assert main(["run", str(path), "--out", str(resumed), "--no-progress"]) == 130
    assert main(["run", str(path), "--resume", str(resumed), "--no-progress"]) == 0
    expected, got = read_metrics(full), read_metrics(resumed)
    assert [r["round"] for r in got] == [1, 2, 3, 4, 5]
    assert _without_timing(got) == _without_timing(expected)
    assert got[-1]["epsilon"] > got[1]["epsilon"] > 0  # the ledgers kept growing
