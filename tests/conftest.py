"""Shared fixtures: small scenarios and an in-memory round observer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fedsim.run.logs import quiet_flower
from fedsim.scenario import Scenario, parse_scenario

quiet_flower()

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "rounds": 2,
    "runtime": "inline",
    "device": "cpu",
    "data": {"dataset": "digits", "partition": "iid", "num_clients": 5},
    "model": {"name": "cnn", "params": {"width": 8}},
    "clients": {"per_round": 5, "local_epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9},
}


def make_scenario(**changes: Any) -> Scenario:
    """TINY with dotted-key changes, e.g. make_scenario(**{"data.num_clients": 4})."""
    raw = copy.deepcopy(TINY)
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return parse_scenario(raw)


class RecordingObserver:
    """Keeps round records and the summary in memory."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None

    def on_round(self, record: dict[str, Any]) -> None:
        self.rounds.append(record)

    def on_end(self, summary: dict[str, Any]) -> None:
        self.summary = summary


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


def interrupt_in_round(monkeypatch: pytest.MonkeyPatch, stop_round: int) -> None:
    """Make the first train message of ``stop_round`` raise KeyboardInterrupt (Ctrl-C)."""
    import clients.app
    import fedsim.run.runner

    real = clients.app.make_client_app

    def interrupting_app(scenario):  # noqa: ANN001, ANN202
        inner = real(scenario)

        def app(message, context):  # noqa: ANN001, ANN202
            if message.metadata.message_type == "train":
                if int(message.content["config"]["server-round"]) == stop_round:
                    raise KeyboardInterrupt
            return inner(message, context)

        return app

    monkeypatch.setattr(fedsim.run.runner, "make_client_app", interrupting_app)
