"""One client's train round in three steps, shared by the ClientApp and the vectorized runtime.

1. :func:`start_train`, before local training: adopt the node state a resumed run hands back,
   draw the client's seeded faults (a crash raises), read the global weights and the client's
   data, poison the data with a data-side attack (drawing from the client's ``ATTACK``
   generator), let an active class-inference attacker add its GAN's fakes to its data
   (:meth:`fedsim.inference.attacker.ClassInferenceAttacker.poison`), and look up the DP-SGD
   round of an honest client under local DP.
2. Local training from :meth:`TrainJob.generator` (the client's ``TRAIN`` generator): plain
   SGD (:func:`fedsim.training.train_local`), DP-SGD (:func:`fedsim.privacy.train_dp_sgd`), or
   many clients at once (:func:`fedsim.vectorized.train_clients_vectorized`). A DP-SGD round is
   added to the client's ledger in its node state by :func:`record_dp_round`.
3. :func:`finish_train`: the update Δ = w_local − w_global in float64, the update-side attack
   (given the last global change, kept in the node state, when it reads it: Neurotoxin) and
   the reply.

Every runtime calls these functions, so a client does exactly the same thing on all of them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from clients.state import adopt_state
from fedsim.attacks import ClientAttack, DataPoisoning
from fedsim.audit.gradient import canary_insertions
from fedsim.evasion.pixel_space import model_in_pixel_space
from fedsim.faults import client_faults
from fedsim.federation import Federation
from fedsim.params import all_finite, load_flat_params
from fedsim.privacy import PrivacyLedger
from fedsim.privacy.dp_sgd import InsertedGradients
from fedsim.privacy.local import LocalDPRound, local_dp_round
from fedsim.protocol import (
    ARRAYS,
    CONFIG,
    DP_EPSILON,
    DP_HISTORY,
    DP_NOISE_MULTIPLIER,
    LAST_GLOBAL_KEY,
    LEDGER_KEY,
    METRICS,
    NUM_EXAMPLES,
    PARTITION_ID,
    SERVER_ROUND,
    STEPS,
    TRAIN_LOSS,
    UPDATE_KEY,
    WEIGHTS_KEY,
    from_array_record,
    from_shared_array_record,
    to_array_record,
)
from fedsim.seeding import Stream, torch_generator
from fedsim.training import AdversarialSettings, TrainResult, TrainSettings, single_thread

__all__ = [
    "TrainJob",
    "client_update",
    "finish_train",
    "finish_train_in_batch",
    "float64_delta",
    "global_weights_of",
    "local_attack",
    "message_round",
    "record_dp_round",
    "reply_metric_values",
    "start_train",
]

PrivacyMetrics = dict[str, float | list[float]]


@dataclass(frozen=True)
class TrainJob:
    """What one client trains in one round, after its faults and any data poisoning.

    Attributes
    ----------
    fed : Federation
        The run's federation.
    client_id, server_round : int
        Who trains, and in which round.
    global_weights : torch.Tensor
        The global weights the message carried (flat, float32), shared by every client of
        the round in this process: never modified in place.
    poisoned : tuple of torch.Tensor, or None
        The client's data after its data-side attack; ``None`` without one (then
        :attr:`x` and :attr:`y` load the client's data when first read).
    attack : ClientAttack or None
        The client's local attack (malicious clients only).
    attack_rng : torch.Generator or None
        The client's ``ATTACK`` generator (``None`` without an attack), already advanced by
        the data poisoning; the update-side attack continues from it.
    straggler : bool
        The client is slow this round (``faults.straggler``).
    dp : LocalDPRound or None
        σ, q and the step count of the client's DP-SGD round (honest clients under local DP).
    inserted : InsertedGradients or None
        A white-box audit's gradient canaries its DP-SGD adds this round
        (:func:`fedsim.audit.gradient.canary_insertions`); ``None``: none.
    """

    fed: Federation
    client_id: int
    server_round: int
    global_weights: torch.Tensor
    poisoned: tuple[torch.Tensor, torch.Tensor] | None
    attack: ClientAttack | None
    attack_rng: torch.Generator | None
    straggler: bool
    dp: LocalDPRound | None
    inserted: InsertedGradients | None = None

    @functools.cached_property
    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The client's training data (images, labels), poisoned when it runs a data attack.

        Loaded when first read, not by :func:`start_train`: a runtime whose training never
        needs a client's data as one tensor does not gather it.
        """
        return self.poisoned if self.poisoned is not None else self.fed.data.client(self.client_id)

    @property
    def x(self) -> torch.Tensor:
        """The client's training images (:attr:`data`)."""
        return self.data[0]

    @property
    def y(self) -> torch.Tensor:
        """The client's training labels (:attr:`data`)."""
        return self.data[1]

    @property
    def settings(self) -> TrainSettings:
        """The local procedure of the scenario's ``clients`` block."""
        return TrainSettings.from_clients(self.fed.scenario.clients)

    @property
    def adversarial(self) -> AdversarialSettings | None:
        """Adversarial training (``clients.adversarial_training``) for an honest client.

        Malicious clients keep their attack's behaviour and train plainly.
        """
        block = self.fed.scenario.clients.adversarial_training
        if block is None or self.client_id in self.fed.malicious:
            return None
        dataset = self.fed.data.dataset
        return AdversarialSettings(block.build(), dataset.mean, dataset.std)

    def generator(self) -> torch.Generator:
        """A fresh copy of the client's ``TRAIN`` generator for this round (shuffles, DP noise)."""
        return torch_generator(
            self.fed.scenario.seed, Stream.TRAIN, self.server_round, self.client_id
        )


def local_attack(fed: Federation, client_id: int, server_round: int) -> ClientAttack | None:
    """Return the client's local attack in ``server_round``, if it has one.

    A client attacks when it is malicious, the attack runs on clients, and the round lies in
    the attack window (``attack.start_round`` … ``attack.stop_round``); otherwise it trains
    and replies honestly. Under ``strength: optimal`` an update attack is applied by the
    server-side adversary stage instead (``fed.strength``), so the client replies honestly.
    """
    if client_id not in fed.malicious or not isinstance(fed.attack, ClientAttack):
        return None
    if fed.strength is not None:
        return None
    return fed.attack if fed.scenario.attack.active(server_round) else None


def start_train(fed: Federation, msg: Message, context: Context) -> TrainJob:
    """Everything before local training (see the module docstring).

    Raises
    ------
    RuntimeError
        The client crashes this round (``faults.crash``); the runtimes turn it into an error
        reply.
    InvalidSettingError
        The DP-SGD round is impossible for this client (batch size above its data size).
    """
    client_id = int(context.node_config["partition-id"])
    server_round = message_round(msg)
    global_weights = global_weights_of(msg)
    adopt_state(msg.content, context.state)  # the state a resumed run hands back
    scenario = fed.scenario
    faults = client_faults(scenario.faults, scenario.seed, server_round, client_id)
    if faults.crash:
        raise RuntimeError(f"injected crash of client {client_id} (faults.crash)")
    attack = local_attack(fed, client_id, server_round)
    attack_rng, poisoned = None, None
    if attack is not None:
        attack_rng = torch_generator(scenario.seed, Stream.ATTACK, server_round, client_id)
    if isinstance(attack, DataPoisoning):
        poisoned = attack.poison(
            *fed.data.client(client_id),
            attacker_index=fed.attacker_index(client_id),
            num_attackers=len(fed.malicious),
            generator=attack_rng,
        )
    inference = fed.class_inference
    if inference is not None and inference.active and client_id == inference.client_id:
        poisoned = _with_fakes(fed, server_round, global_weights, poisoned)
    private = scenario.privacy.local_dp is not None and client_id not in fed.malicious
    num_examples = len(poisoned[1]) if poisoned is not None else fed.data.num_examples(client_id)
    dp = local_dp_round(scenario, num_examples) if private else None
    inserted = None
    if dp is not None and fed.gradient_canaries is not None:
        inserted = canary_insertions(
            scenario, fed.gradient_canaries, client_id, server_round, dp.steps, dp.sample_rate
        )
    return TrainJob(
        fed=fed,
        client_id=client_id,
        server_round=server_round,
        global_weights=global_weights,
        poisoned=poisoned,
        attack=attack,
        attack_rng=attack_rng,
        straggler=faults.straggler,
        dp=dp,
        inserted=inserted,
    )


def _with_fakes(
    fed: Federation,
    server_round: int,
    global_weights: torch.Tensor,
    poisoned: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The active class-inference attacker's data: its own, then its GAN's labelled fakes.

    A global model with NaN/Inf weights gives no generator: the attacker trains on its own data.
    """
    attacker = fed.class_inference
    if attacker is None:
        raise ValueError("the scenario has no privacy.class_inference attacker")
    x, y = poisoned if poisoned is not None else fed.data.client(attacker.client_id)
    if not all_finite(global_weights):
        return x, y
    model = fed.model("class-inference")
    load_flat_params(model, global_weights)
    dataset = fed.data.dataset
    with single_thread(fed.device):
        discriminator = model_in_pixel_space(model, dataset.mean, dataset.std)
        return attacker.poison(discriminator, server_round, x, y)


def message_round(msg: Message) -> int:
    """The server round a train message is for (its ``config`` record's ``server-round``).

    Raises
    ------
    ValueError
        The message carries no round: the reply is an error naming what is missing.
    """
    try:
        return int(msg.content[CONFIG][SERVER_ROUND])
    except KeyError:
        raise ValueError(
            f"{msg.metadata.message_type} message without its round "
            f"(config record {CONFIG!r}, key {SERVER_ROUND!r})"
        ) from None


def global_weights_of(msg: Message) -> torch.Tensor:
    """The flat global weights a train or evaluate message carries (shared: do not modify).

    Raises
    ------
    ValueError
        The message carries no weights: the reply is an error naming what is missing.
    """
    try:
        return from_shared_array_record(msg.content[ARRAYS], WEIGHTS_KEY)
    except KeyError:
        raise ValueError(
            f"{msg.metadata.message_type} message without the global weights "
            f"(array record {ARRAYS!r}, key {WEIGHTS_KEY!r})"
        ) from None


def record_dp_round(context: Context, job: TrainJob) -> PrivacyMetrics:
    """Add the job's DP-SGD round ``(σ, q, K)`` to the client's ledger in its node state.

    Returns the privacy report for the reply: the cumulative ledger (``dp-history``), the
    client's ε over every DP-SGD step it has taken so far (``dp-epsilon``) and σ
    (``dp-noise-multiplier``).
    """
    local = job.fed.scenario.privacy.local_dp
    if local is None or job.dp is None:
        raise ValueError(f"client {job.client_id} does not train with DP-SGD this round")
    stored = context.state.config_records.get(LEDGER_KEY)
    ledger = PrivacyLedger.from_list(stored["history"] if stored is not None else [])
    ledger.record(*job.dp.entry())
    context.state[LEDGER_KEY] = ConfigRecord({"history": ledger.to_list()})
    return {
        DP_HISTORY: ledger.to_list(),
        DP_EPSILON: ledger.epsilon(local.delta, local.accountant),
        DP_NOISE_MULTIPLIER: job.dp.noise_multiplier,
    }


def finish_train(
    msg: Message,
    context: Context,
    job: TrainJob,
    local_weights: torch.Tensor,
    result: TrainResult,
    privacy_metrics: PrivacyMetrics,
) -> Message:
    """The reply to ``msg``: the (attacked) float64 update Δ = w_local − w_global and metrics."""
    delta = client_update(context, job, float64_delta(local_weights, job.global_weights))
    content = RecordDict(
        {
            UPDATE_KEY: to_array_record(UPDATE_KEY, delta),
            METRICS: MetricRecord(reply_metric_values(job, result, privacy_metrics)),
        }
    )
    return Message(content, reply_to=msg)


def finish_train_in_batch(
    context: Context,
    job: TrainJob,
    row: torch.Tensor,
    result: TrainResult,
    privacy_metrics: PrivacyMetrics,
) -> dict[str, Any]:
    """:func:`finish_train` for a client whose Δ is ``row`` of a round's update batch.

    ``row`` holds Δ = w_local − w_global (:func:`float64_delta`); the update-side attack
    rewrites it in place. Returns the reply's metrics, which the batch carries
    (:class:`fedsim.protocol.UpdateBatch`) instead of a reply of the client's own.
    """
    if job.attack is not None:
        row.copy_(client_update(context, job, row))
    return reply_metric_values(job, result, privacy_metrics)


def float64_delta(
    local_weights: torch.Tensor, global_weights: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Δ = float64(w_local) − float64(w_global), exactly (into ``out`` if given).

    One pass: ``w_local`` is converted element by element inside the subtraction (type
    promotion), so no float64 copy of it is made; the float64 copy of the round's shared
    global weights is made once and kept for the next client of the round.

    Examples
    --------
    >>> a, b = torch.tensor([1.0, 3.0]), torch.tensor([0.1, 1e-8])
    >>> bool((float64_delta(a, b) == a.double() - b.double()).all())
    True
    """
    if out is None:
        out = torch.empty(local_weights.numel(), dtype=torch.float64)
    reference = _as_float64(global_weights).to(out.device)
    with torch.no_grad():
        return torch.sub(local_weights.to(out.device), reference, out=out)


def _as_float64(weights: torch.Tensor) -> torch.Tensor:
    """``weights`` in float64, converted once per tensor object (the round's global weights)."""
    if weights.dtype == torch.float64:
        return weights
    if _float64_copy and _float64_copy[0] is weights:
        return _float64_copy[1]
    converted = weights.detach().to(torch.float64)
    _float64_copy[:] = [weights, converted]
    return converted


_float64_copy: list[torch.Tensor] = []


def client_update(context: Context, job: TrainJob, delta: torch.Tensor) -> torch.Tensor:
    """The update the client sends: its Δ, transformed by its update-side attack if it has one.

    The attack gets the last global change when it reads it (Neurotoxin), from the node state.
    """
    if job.attack is None or job.attack_rng is None:
        return delta
    reference = (
        _last_global_change(context, job.global_weights) if job.attack.uses_reference else None
    )
    return job.attack.transform_update(delta, reference=reference, generator=job.attack_rng)


def reply_metric_values(
    job: TrainJob, result: TrainResult, privacy_metrics: PrivacyMetrics
) -> dict[str, Any]:
    """The metrics of a train reply: who, how many examples, loss, steps, the privacy report."""
    return {
        PARTITION_ID: job.client_id,
        NUM_EXAMPLES: result.num_examples,
        TRAIN_LOSS: result.loss,
        STEPS: result.steps,
        **privacy_metrics,
    }


def _last_global_change(context: Context, global_weights: torch.Tensor) -> torch.Tensor | None:
    """w_global(now) − w_global(last time this client trained); ``None`` the first time."""
    previous = context.state.array_records.get(LAST_GLOBAL_KEY)
    context.state[LAST_GLOBAL_KEY] = to_array_record(LAST_GLOBAL_KEY, global_weights)
    if previous is None:
        return None
    previous_weights = from_array_record(previous, LAST_GLOBAL_KEY)
    return global_weights.to(torch.float64) - previous_weights.to(torch.float64)
