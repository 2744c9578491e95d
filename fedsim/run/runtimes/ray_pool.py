"""fedsim's engine for the ``ray`` runtime: a Grid that hands each Ray actor a share of a round.

Flower's simulation engine moves every message through its LinkState, a polling loop (one
message per node per 0.1 s pass) and one Ray call per client; on a 2-core machine that costs
more than training a digits CNN client. :class:`RayPoolGrid` keeps Flower's ServerApp,
strategy, ClientApp and Message API and replaces only the transport:

- a pool of long-lived actors (one per ``ray.client_cpus`` of the machine or cluster, at most
  one per client of a round), each building the ClientApp — and so its partitions, test set
  and model objects — once;
- each round, the messages (in client-id order) are dealt to the actors round-robin, and each
  actor gets its share in **one** call: the global weights, referenced by every message, are
  pickled once per actor and round, not once per client;
- each client's Flower ``Context`` stays with the driver (as on ``inline``) and travels with
  its message; the actor returns the updated context, so node state (DP ledgers, Neurotoxin's
  last global model) survives however messages are dealt;
- clients run the same code as on ``inline``, one after another inside an actor on one thread,
  so replies are bit-identical to ``inline``'s; each reply carries its own duration, compared
  with the round timeout as on ``inline``.

``ray.engine: flower`` runs Flower's own engine instead (``flwr.simulation.run_simulation``).
"""

from __future__ import annotations

import time
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedsim.run.runtimes.inline import CPU, InlineGrid, error_reply
from fedsim.training import single_thread

__all__ = ["ClientWorker", "RayPoolGrid", "pool_size"]


def pool_size(cpus: float, client_cpus: float, clients_per_round: int) -> int:
    """Actors in the pool: as many as the CPUs hold at ``client_cpus`` each, at most one per client.

    Examples
    --------
    >>> pool_size(cpus=2, client_cpus=1.0, clients_per_round=50)
    2
    >>> pool_size(cpus=16, client_cpus=1.0, clients_per_round=10)
    10
    >>> pool_size(cpus=1, client_cpus=2.0, clients_per_round=10)
    1
    """
    return max(1, min(clients_per_round, int(cpus // client_cpus)))


class ClientWorker:
    """A Ray actor running the ClientApp on batches of (message, context) pairs."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        from clients.app import make_client_app
        from fedsim.run.logs import quiet_flower
        from fedsim.scenario import parse_scenario

        quiet_flower()
        self.client_app = make_client_app(parse_scenario(scenario))

    def answer(self, jobs: list[tuple[Message, Context]]) -> list[tuple[Message, Context, float]]:
        """Run each message through the ClientApp in turn; replies, contexts and durations."""
        from flwr.supercore.task_identity import TaskIdentity

        out = []
        with single_thread(CPU):  # once per batch, as InlineGrid does
            for msg, context in jobs:
                TaskIdentity.task_id = 1
                TaskIdentity.run_id = context.run_id
                TaskIdentity.node_id = context.node_id
                started = time.perf_counter()
                try:
                    reply = self.client_app(msg, context)
                except Exception as e:  # noqa: BLE001  (a failing client must not stop the server)
                    reply = error_reply(msg, e)
                out.append((reply, context, time.perf_counter() - started))
        return out


class RayPoolGrid(InlineGrid):
    """The :class:`InlineGrid`'s nodes, answered by a pool of Ray actors.

    Parameters
    ----------
    client_app : ClientApp
        The app (its copy in each actor is built from ``scenario``).
    scenario : dict
        The resolved scenario as plain data (each actor parses it).
    num_nodes, seed : int
        As for :class:`InlineGrid`.
    actors : int
        Size of the pool.
    actor_options : dict
        Ray options of each actor (``num_cpus``, ``num_gpus``).
    """

    def __init__(
        self,
        client_app: ClientApp,
        scenario: dict[str, Any],
        num_nodes: int,
        seed: int,
        actors: int,
        actor_options: dict[str, float],
    ) -> None:
        import ray

        super().__init__(client_app, num_nodes, seed)
        self._worker = ray.remote(ClientWorker).options(**actor_options)
        self._scenario = scenario
        self._actors = [self._worker.remote(scenario) for _ in range(actors)]

    def _answer(self, messages: dict[str, Message]) -> dict[str, tuple[Message, float]]:
        """Deal the messages to the actors round-robin; one call per actor; wait for all."""
        import ray
        from ray.exceptions import RayError

        ids = list(messages)
        shares = [ids[i :: len(self._actors)] for i in range(len(self._actors))]
        calls = []
        for actor, share in zip(self._actors, shares, strict=True):
            if share:
                jobs = [(messages[m], self._node_context(messages[m])) for m in share]
                calls.append((actor, share, actor.answer.remote(jobs)))
        answers: dict[str, tuple[Message, float]] = {}
        for actor, share, call in calls:
            try:
                results = ray.get(call)
            except RayError as e:  # the actor died: its clients failed, a new one takes over
                self._actors[self._actors.index(actor)] = self._worker.remote(self._scenario)
                for m in share:
                    answers[m] = (error_reply(messages[m], e), 0.0)
                continue
            for m, (reply, context, seconds) in zip(share, results, strict=True):
                self._contexts[messages[m].metadata.dst_node_id] = context
                answers[m] = (reply, seconds)
        return {m: answers[m] for m in ids}  # client-id order, as given

    def _node_context(self, msg: Message) -> Context:
        return self.context(msg.metadata.dst_node_id)
