"""The server's copy of every client's node state, so that a resumed run continues exactly.

Flower keeps what a client carries between rounds in its node ``context.state`` (see
:mod:`clients.state`), which a restarted run does not have. Everything stored there is a
function of the schedule the server itself draws — who is sampled, who drops out or crashes —
so the server can keep an exact copy without asking the clients:

- an honest client under local DP adds its round's ``(σ, q, K)`` to its ledger whenever it
  receives a train message and does not crash (a straggler trains even if its reply times out);
- a malicious client whose attack reads the last global change stores the global weights it
  was sent.

The copy goes into checkpoints; after a resume, each client's first train message carries
its state back (:meth:`ClientStateMirror.handoff`).
"""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedsim.attacks import ClientAttack
from fedsim.faults import client_faults
from fedsim.federation import Federation
from fedsim.privacy import PrivacyLedger
from fedsim.privacy.local import local_dp_round
from fedsim.protocol import LAST_GLOBAL_KEY, LEDGER_KEY, to_array_record

__all__ = ["ClientStateMirror"]


class ClientStateMirror:
    """What each client keeps in its node state, mirrored on the server.

    Parameters
    ----------
    fed : Federation
        The run's federation (scenario, data sizes, attack, malicious ids).
    """

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        scenario = fed.scenario
        self._local_dp = scenario.privacy.local_dp is not None
        self._reference = isinstance(fed.attack, ClientAttack) and fed.attack.uses_reference
        self.ledgers: dict[int, PrivacyLedger] = {}
        self.last_global: dict[int, torch.Tensor] = {}
        self._to_hand_back: set[int] = set()

    def record(self, server_round: int, clients: list[int], weights: torch.Tensor) -> None:
        """Mirror what ``clients``, sent this round's train message with ``weights``, store."""
        scenario, malicious = self.fed.scenario, self.fed.malicious
        for client in clients:
            if client_faults(scenario.faults, scenario.seed, server_round, client).crash:
                continue
            if self._local_dp and client not in malicious:
                size = len(self.fed.data.client(client)[1])
                self.ledgers.setdefault(client, PrivacyLedger()).record(
                    *local_dp_round(scenario, size).entry()
                )
            if self._reference and client in malicious:
                self.last_global[client] = weights

    def handoff(self, client: int) -> dict[str, ConfigRecord | ArrayRecord]:
        """The state records to send ``client`` in its first train message after a resume."""
        if client not in self._to_hand_back:
            return {}
        self._to_hand_back.discard(client)
        records: dict[str, ConfigRecord | ArrayRecord] = {}
        if client in self.ledgers:
            records[LEDGER_KEY] = ConfigRecord({"history": self.ledgers[client].to_list()})
        if client in self.last_global:
            records[LAST_GLOBAL_KEY] = to_array_record(LAST_GLOBAL_KEY, self.last_global[client])
        return records

    def state_dict(self) -> dict[str, Any]:
        """The mirrored ledgers (flat triples) and last-seen weights, by client id."""
        return {
            "ledgers": {c: ledger.to_list() for c, ledger in self.ledgers.items()},
            "last_global": dict(self.last_global),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; every client gets its state handed back."""
        self.ledgers = {int(c): PrivacyLedger.from_list(h) for c, h in state["ledgers"].items()}
        self.last_global = {int(c): w for c, w in state["last_global"].items()}
        self._to_hand_back = set(self.ledgers) | set(self.last_global)
