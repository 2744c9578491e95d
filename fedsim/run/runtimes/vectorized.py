"""The ``vectorized`` runtime: a round's local training as one batched computation.

:class:`VectorizedGrid` is the :class:`~fedsim.run.runtimes.inline.InlineGrid` (same nodes, same
per-node Flower ``Context``, same unchanged ServerApp and strategy) except for how it answers
a round's ``train`` messages. Instead of calling the ClientApp once per message it

1. runs each client's pre-training step (:func:`clients.train_round.start_train`: node state
   of a resumed run, seeded faults, global weights, data poisoning, its DP-SGD round);
2. trains every client of the round together (:func:`fedsim.vectorized.train_clients_vectorized`:
   stacked parameters, ``torch.func`` ``functional_call`` + ``vmap`` + ``grad``, clients
   grouped by step count, padded and masked, chunked to fit memory) — honest clients under
   local DP with DP-SGD (per-sample clipping by a nested ``vmap``), the others with plain SGD;
   honest clients under ``clients.adversarial_training`` on the adversarial-training loss
   (the inner attack's input gradients inside the same ``vmap``);
3. finishes each client like the ClientApp (:func:`clients.train_round.record_dp_round`,
   :func:`clients.train_round.finish_train_in_batch`: its DP ledger, the update-side
   attack, the reply's metrics) — but the updates are the rows of one float64 matrix (Δ
   computed straight into its row), published once with the rows' metrics
   (:func:`fedsim.protocol.publish_update_batch`), and one reply answers for the round's
   clients together, instead of each client encoding its own ``.npy`` array and metric
   record for the server to decode, check one by one and stack again. Only a client whose
   reply means something of its own replies alone: a failed one (its error) and a straggler
   (its reply may time out). The matrix's memory
   is reused from round to round when nothing kept last round's
   (:class:`fedsim.vectorized.buffers.ReusableMatrix`).

So the server receives exactly what the ClientApp would have sent, up to floating-point
differences of the batched kernels, and aggregation, the adversary stage, defences, central
DP and metrics run unchanged. ``query`` and ``evaluate`` messages still go through the
ClientApp.

Faults: a crashing client gets the error reply it gets on the other runtimes. A straggler is
*modelled*, not slept: its reply counts as arriving ``faults.straggler_delay_s`` seconds
after the round's computation, so it is timed out (no reply) exactly when that delay exceeds
``clients.timeout_s``; it still trains (spending its DP budget, as on the other runtimes,
where its late reply is dropped). A batched computation gives no client a duration of its own,
so no other reply ever times out, and rounds do not wait out straggler delays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from flwr.app import Message, MessageType
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from clients.train_round import (
    TrainJob,
    finish_train_in_batch,
    float64_delta,
    record_dp_round,
    start_train,
)
from fedsim.errors import RunError
from fedsim.federation import Federation, federation_for
from fedsim.protocol import UpdateBatch, publish_update_batch, withdraw_update_batch
from fedsim.run.runtimes.inline import InlineGrid, error_reply, run_on_grid
from fedsim.scenario import Scenario
from fedsim.training import TrainSettings
from fedsim.vectorized import ClientOutcome, DPSettings, LocalTask, train_clients_vectorized
from fedsim.vectorized.buffers import ReusableMatrix

__all__ = ["VectorizedGrid", "run_vectorized"]

log = logging.getLogger(__name__)

Trained = dict[str, ClientOutcome | Exception]
"""A round's training outcome per message id, or the error its batched computation raised."""


class VectorizedGrid(InlineGrid):
    """An in-process Grid that answers a round's train messages with one batched computation.

    Parameters
    ----------
    client_app : ClientApp
        Answers the messages that are not ``train`` (the handshake, evaluation).
    scenario : Scenario
        The run's scenario (its federation, ``clients`` settings and ``vectorized`` block).
    run_id : int
        The Flower run id.
    """

    def __init__(self, client_app: ClientApp, scenario: Scenario, run_id: int = 1) -> None:
        super().__init__(client_app, scenario.data.num_clients, scenario.seed, run_id)
        self.scenario = scenario
        self._deltas = ReusableMatrix()

    def _answer(self, messages: dict[str, Message]) -> dict[str, tuple[Message, float]]:
        train = {
            m: msg for m, msg in messages.items() if msg.metadata.message_type == MessageType.TRAIN
        }
        others = {m: msg for m, msg in messages.items() if m not in train}
        answers = super()._answer(others)
        if train:
            answers.update(self._train_round(train))
        return answers

    def _train_round(self, messages: dict[str, Message]) -> dict[str, tuple[Message, float]]:
        """Reply to a round's train messages; each reply's modelled arrival time (seconds).

        The trained clients' updates are written as the rows of one float64 matrix (in
        message order, which is client-id order) and published once with their metrics
        (:func:`fedsim.protocol.publish_update_batch`). One reply answers for all of them
        together; a straggler, whose reply may time out, and a failed client reply on their
        own. The returned replies are keyed by the message they answer.
        """
        withdraw_update_batch()  # last round's batch: its memory may be reused now
        fed = federation_for(self.scenario)
        answers: dict[str, tuple[Message, float]] = {}
        jobs: dict[str, TrainJob] = {}
        for message_id, msg in messages.items():
            try:
                jobs[message_id] = start_train(fed, msg, self.context(msg.metadata.dst_node_id))
            except Exception as e:  # noqa: BLE001  (a failing client must not stop the server)
                answers[message_id] = (error_reply(msg, e), 0.0)
        trained = self._train_jobs(fed, jobs)
        ok = [m for m in jobs if not isinstance(trained[m], Exception)]
        dim = jobs[ok[0]].global_weights.numel() if ok else 0
        deltas = self._deltas.take(len(ok), dim, torch.float64)
        rows: dict[int, int] = {}
        metrics: list[dict[str, Any]] = []
        delay = fed.scenario.faults.straggler_delay_s
        for message_id, job in jobs.items():
            msg, outcome = messages[message_id], trained[message_id]
            node = msg.metadata.dst_node_id
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                row = deltas[len(metrics)]
                float64_delta(outcome.weights, job.global_weights, out=row)
                context = self.context(node)
                privacy = record_dp_round(context, job) if job.dp is not None else {}
                metrics.append(finish_train_in_batch(context, job, row, outcome.result, privacy))
                rows[node] = len(metrics) - 1
            except Exception as e:  # noqa: BLE001
                answers[message_id] = (error_reply(msg, e), delay if job.straggler else 0.0)
        alone = {m for m in jobs if jobs[m].straggler and m not in answers}  # may time out
        together = [m for m in jobs if m not in answers and m not in alone]
        nodes = [messages[m].metadata.dst_node_id for m in together]
        batch = UpdateBatch(deltas[: len(metrics)], rows, metrics, nodes)
        joint, own = publish_update_batch(batch)
        if together:  # one reply for them all, as the reply to the first one's message
            answers[together[0]] = (Message(joint, reply_to=messages[together[0]]), 0.0)
        for message_id in alone:
            answers[message_id] = (Message(own, reply_to=messages[message_id]), delay)
        return answers

    def _train_jobs(self, fed: Federation, jobs: dict[str, TrainJob]) -> Trained:
        """Train the plain-SGD jobs together, then the DP-SGD ones."""
        model = fed.model("vectorized")
        settings = TrainSettings.from_clients(fed.scenario.clients)
        chunk_size = fed.scenario.vectorized.chunk_size
        plain = {m: job for m, job in jobs.items() if job.dp is None and job.adversarial is None}
        private = {m: job for m, job in jobs.items() if job.dp is not None}
        robust = {m: job for m, job in jobs.items() if job.dp is None and m not in plain}
        augment = fed.data.dataset.augment

        def trainer(**options: Any) -> Callable[[list[LocalTask]], list[ClientOutcome]]:
            return lambda tasks: train_clients_vectorized(
                model, tasks, settings, chunk_size=chunk_size, **options
            )

        trained = _batch(plain, trainer(augment=augment))
        adversarial = next((job.adversarial for job in robust.values()), None)
        if robust and adversarial is not None:  # honest clients under adversarial training
            trained |= _batch(robust, trainer(augment=augment, adversarial=adversarial))
        local = fed.scenario.privacy.local_dp
        if private and local is not None:
            dp = DPSettings(local.max_grad_norm, local.poisson_sampling)
            private_adversarial = next(iter(private.values())).adversarial
            trained |= _batch(private, trainer(dp=dp, adversarial=private_adversarial))
        log.debug(
            "vectorized round: %d plain, %d adversarial-training, %d DP-SGD clients",
            len(plain),
            len(robust),
            len(private),
        )
        return trained


def _batch(
    jobs: dict[str, TrainJob], train: Callable[[list[LocalTask]], list[ClientOutcome]]
) -> Trained:
    """Run ``train`` on the jobs' tasks; an error fails every job of the batch.

    A :class:`~fedsim.errors.RunError` (out of GPU memory) is no client's failure: it stops
    the run.
    """
    if not jobs:
        return {}
    tasks = [
        LocalTask(
            job.global_weights,
            job.x,
            job.y,
            job.generator(),
            job.dp.noise_multiplier if job.dp is not None else 0.0,
            job.inserted,
        )
        for job in jobs.values()
    ]
    try:
        outcomes = train(tasks)
    except RunError:
        raise
    except Exception as e:  # noqa: BLE001  (reported as every client's error reply)
        return dict.fromkeys(jobs, e)
    return dict(zip(jobs, outcomes, strict=True))


def run_vectorized(server_app: ServerApp, client_app: ClientApp, scenario: Scenario) -> None:
    """Run ``server_app`` against the scenario's clients on a :class:`VectorizedGrid`."""
    try:
        run_on_grid(server_app, VectorizedGrid(client_app, scenario))
    finally:
        withdraw_update_batch()  # the last round's matrix is not kept after the run
