"""Instruction messages as the server sends them, and an in-process grid to answer them."""

from __future__ import annotations

import torch
from flwr.app import ConfigRecord, Message, RecordDict

from clients.app import make_client_app
from fedsim.protocol import ARRAYS, CONFIG, SERVER_ROUND, WEIGHTS_KEY, to_array_record
from fedsim.run.runtimes.inline import InlineGrid
from fedsim.scenario import Scenario


def grid_for(scenario: Scenario) -> InlineGrid:
    """The real ClientApp of ``scenario`` on its nodes, in this process (as the runner does)."""
    return InlineGrid(make_client_app(scenario), scenario.data.num_clients, scenario.seed)


def instruction(
    weights: torch.Tensor | None, server_round: int | None, **extra: object
) -> RecordDict:
    """A train/evaluate message's content; ``None`` leaves that record out (malformed)."""
    content = RecordDict()
    if weights is not None:
        content[ARRAYS] = to_array_record(WEIGHTS_KEY, weights)
    if server_round is not None:
        content[CONFIG] = ConfigRecord({SERVER_ROUND: server_round})
    for key, record in extra.items():
        content[key] = record  # type: ignore[assignment]
    return content


def ask(grid: InlineGrid, client: int, kind: str, content: RecordDict) -> Message:
    """Send one message of ``kind`` to ``client``'s node; return its reply."""
    (reply,) = grid.send_and_receive([Message(content, grid.node_id(client), kind)])
    return reply
