"""What a client keeps in its Flower node state between rounds, and how a resumed run returns it.

Two records can live in a client's ``context.state``:

- ``fedsim.dp-ledger`` (a ConfigRecord with ``history``, flat ``σ, q, K`` triples): an honest
  client's DP-SGD ledger under local DP;
- ``fedsim.last-global`` (an ArrayRecord): the global weights a malicious client saw the last
  time it trained, for attacks that read the last global-model change (Neurotoxin).

A resumed run starts with empty node states, so the server hands every client its state back
in the first train message after the resume, as records under the same keys
(:class:`server.client_state.ClientStateMirror`); :func:`adopt_state` moves them into a node
state that does not have them yet.
"""

from __future__ import annotations

from flwr.app import RecordDict

from fedsim.protocol import STATE_KEYS

__all__ = ["adopt_state"]


def adopt_state(content: RecordDict, state: RecordDict) -> None:
    """Copy the state records a train message carries into ``state`` where it lacks them.

    A client that already holds a record keeps its own: the message's copy only restores what
    a restart lost.
    """
    for key in STATE_KEYS:
        if key in content and key not in state:
            state[key] = content[key]
