r"""The server's side of SecAgg+ in a run (``defense.secure_aggregation``): the learned sum only.

:class:`SecureAggregation` runs Flower's SecAgg+ stages (Bell et al., CCS 2020) with
:class:`fedsim.secagg.SecAggServer` around a round's train message, as extra exchanges on the
run's grid (one message per node, built separately: an in-process grid shares message
objects between nodes):

1. :meth:`~SecureAggregation.begin`, before training: ``query.secagg_setup`` to every sampled
   client (public keys, example counts ``n_i``), then ``query.secagg_share_keys`` (encrypted
   shares, kept to forward). Clients that ``faults.dropout`` drops this round answer these two
   stages and then drop: they get no train message, so their pairwise masks are removed from
   the others' vectors through the shares of their keys. Returns each remaining client's
   forwarded shares and the public scale ``W = max n_i`` for its train message.
2. :meth:`~SecureAggregation.finish`, after training: the masked vectors of the train replies
   (set ``A``), then ``query.secagg_unmask`` to ``A``; the unmasked sum decodes to
   ``Ŝ ≈ Σ_{i∈A} (n_i/W) Δ_i`` and the round's aggregate is FedAvg's weighted mean

   .. math:: \bar\Delta = \frac{W}{\sum_{i \in A} n_i}\, \hat S
             \approx \frac{\sum_{i \in A} n_i \Delta_i}{\sum_{i \in A} n_i}.

**Groups** (``groups: k``): the sampled clients are split at random, per round, into ``k``
groups of near-equal size, each with its own :class:`~fedsim.secagg.SecAggServer` (the
exchanges still carry one message per node); the server learns ``k`` group means, each
FedAvg's mean of its group, and a group whose protocol fails is left out.

**Error bound.** Each client's quantized value is within one step ``2c/Q`` of its clipped
weighted update, so ``|Ŝ − Σ (n_i/W) Δ_i| < |A| · 2c/Q`` per coordinate (nothing is clipped
while ``|n_i Δ_i / W| ≤ c``) and the mean's error is below ``|A| · 2c/Q · W / Σ n_i``
(:func:`mean_error_bound`).

**Figures.** ``secagg_error`` is ``max |secure − plain|`` over the aggregate's coordinates.
The plain mean is computed here *for that measurement only*, from the clear updates the
simulated clients attach (:data:`~fedsim.protocol.SECAGG_PLAIN_KEY`): a real server could not
compute it, and nothing else on the server reads them. ``secagg_s`` is the protocol's seconds in
the round (the three extra exchanges, the clients' quantizing and masking, the server's
summing and unmasking), ``secagg_bytes`` the payload bytes up and down per client (keys,
ciphertexts and shares at their length, an id 8 bytes, a vector 8 bytes per coordinate) and
``secagg_messages`` the messages of the three extra exchanges, both ways.

**Model verification** (``clients.verify_model``, against the model inconsistency of
Pasquini et al., ACM CCS 2022): at setup the server announces to each node the hash of the
model it will send it (:func:`fedsim.secagg.model_hash`); each node answers with the hash it
was told, the server relays every neighbour's with its public keys, and a node whose
neighbours announced another model aborts key sharing (the hashes also key its channels, so a
forged relay fails at decryption, and a node checks its train message against the hash).
One such abort fails the round (:class:`~fedsim.secagg.ModelInconsistencyError`): the
strategy records ``model_inconsistency_detected`` 1 (0 in a verified round that ran).

A round whose protocol cannot finish (too few nodes or shares left: fewer than the threshold)
raises :class:`~fedsim.secagg.SecAggAbortedError`; the strategy records it as the round's
``skipped`` reason and the round leaves the model unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fedsim.protocol import (
    METRICS,
    NUM_EXAMPLES,
    SECAGG_KEY,
    SECAGG_MASK_SECONDS,
    SECAGG_MASKED_KEY,
    SECAGG_PLAIN_KEY,
    SECAGG_SETUP,
    SECAGG_SHARE_KEYS,
    SECAGG_UNMASK,
    SERVER_ROUND,
    UPDATE_KEY,
    array_to_numpy,
)
from fedsim.secagg import (
    Cohort,
    ModelInconsistencyError,
    SecAggAbortedError,
    SecAggServer,
    SecAggSettings,
    decode_sum,
    model_hash,
    sum_error_bound,
)
from fedsim.seeding import Stream, numpy_rng
from server.replies import MAX_EXAMPLES, array_update, check_reply

__all__ = ["SecureAggregation", "SecureRound", "mean_error_bound"]

ID_BYTES = 8


def mean_error_bound(
    num_summed: int, scale: float, total_weight: float, settings: SecAggSettings
) -> float:
    """The bound ``|A| · 2c/Q · W / Σ n_i`` on the secure mean's error per coordinate.

    Examples
    --------
    >>> mean_error_bound(4, 100.0, 400.0, SecAggSettings())  # 4 * 16 / 2**22 * 100 / 400
    3.814697265625e-06
    """
    return sum_error_bound(num_summed, settings) * scale / total_weight


@dataclass
class SecureRound:
    """One round's SecAgg+ outcome, as :meth:`SecureAggregation.finish` returns it.

    ``means``, ``weights`` and ``members`` hold one entry per group sum the server learned
    (one with ``groups: 1``): FedAvg's mean of the group, its total example count and its
    clients. A group whose protocol failed is left out (its reason in ``groups_failed``).
    """

    means: list[torch.Tensor]
    weights: list[float]
    members: list[list[int]]
    num_examples: dict[int, int]
    losses: dict[int, float]
    privacy: dict[int, tuple[list[float], float]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    groups_failed: list[str] = field(default_factory=list)

    @property
    def survivors(self) -> list[int]:
        """Every client whose update is in a learned sum."""
        return sorted(c for group in self.members for c in group)


@dataclass
class _Group:
    """One group's clients and its SecAgg+ server (``None`` once it failed)."""

    clients: list[int]
    server: SecAggServer | None
    failed: str | None = None

    def run(self, method: str, by_id: Mapping[int, Any]) -> Any:
        """Call the server's ``method`` with the group's entries of ``by_id`` (SecAgg+ ids).

        A protocol failure fails the group, not the round; returns the method's result
        (``None`` once the group failed).
        """
        if self.server is None:
            return None
        mine = {c + 1 for c in self.clients}
        try:
            return getattr(self.server, method)({i: v for i, v in by_id.items() if i in mine})
        except SecAggAbortedError as e:
            self.server, self.failed = None, str(e)
            return None


class SecureAggregation:
    """SecAgg+ on a run's grid, one round at a time.

    Parameters
    ----------
    settings : SecAggSettings
        The protocol's settings (checked).
    seed : int
        The scenario seed: the groups and neighbour graphs of round ``r`` are drawn from its
        ``SECAGG`` stream.
    timeout : float
        Seconds each exchange waits for its replies.
    groups : int
        ``k``: the sampled clients are split at random into ``k`` groups of (nearly) equal
        size, each running its own SecAgg+ instance; the server learns the ``k`` group sums
        (``k = 1``: the cohort's sum).
    verify : bool
        ``clients.verify_model``: nodes check that their neighbours got the same model.
    """

    def __init__(
        self,
        settings: SecAggSettings,
        seed: int,
        timeout: float = 3600.0,
        groups: int = 1,
        verify: bool = False,
    ) -> None:
        self.settings = settings
        self.seed = seed
        self.timeout = timeout
        self.groups = groups
        self.verify = verify
        self._grid: Grid | None = None
        self._groups: list[_Group] = []
        self._round = 0
        self._scale = 1.0
        self._seconds = 0.0
        self._bytes = 0
        self._messages = 0
        self._cohort_size = 0

    def split(self, server_round: int, sampled: Sequence[int]) -> list[list[int]]:
        """The round's groups: a seeded random split into ``k`` near-equal parts, each sorted.

        Examples
        --------
        >>> sa = SecureAggregation(SecAggSettings(), seed=0, groups=2)
        >>> [len(g) for g in sa.split(1, list(range(7)))]
        [4, 3]
        >>> SecureAggregation(SecAggSettings(), seed=0).split(1, [3, 1, 2])
        [[1, 2, 3]]
        """
        if self.groups == 1:
            return [sorted(sampled)]
        order = numpy_rng(self.seed, Stream.SECAGG, server_round, 1).permutation(len(sampled))
        shuffled = [sorted(sampled)[i] for i in order]
        return [sorted(int(c) for c in part) for part in np.array_split(shuffled, self.groups)]

    def begin(
        self,
        grid: Grid,
        server_round: int,
        sampled: Sequence[int],
        dropped: Iterable[int],
        client_to_node: Mapping[int, int],
        models: Mapping[int, torch.Tensor] | None = None,
    ) -> tuple[dict[int, ConfigRecord], dict[int, str]]:
        """Setup and key sharing with the sampled clients (see the module docstring).

        ``models`` are the weights each client will be sent (needed with ``verify``: their
        hashes are announced at setup).

        Returns
        -------
        (dict, dict)
            The SecAgg+ record of each client that gets a train message, and the clients
            left out by the protocol (with why).

        Raises
        ------
        ModelInconsistencyError
            With ``verify``: a node found that its neighbours got another model.
        SecAggAbortedError
            The protocol cannot go on in any group (too few nodes answered).
        InvalidSettingError
            The settings do not fit a group (fewer than 2 nodes, or a wrapping sum).
        """
        started = time.perf_counter()
        self._grid, self._round = grid, server_round
        self._bytes = self._messages = 0
        self._cohort_size = len(sampled)
        asked, self._groups = {}, []
        for index, members in enumerate(self.split(server_round, sampled)):
            cohort = self.settings.for_cohort(len(members))
            key = () if self.groups == 1 else (2 + index,)
            graph_rng = numpy_rng(self.seed, Stream.SECAGG, server_round, *key)
            server = SecAggServer([c + 1 for c in members], self.settings, cohort, graph_rng)
            self._groups.append(_Group(members, server))
            setup = dict(self._setup_config(server_round, cohort))
            for c in members:  # one record per node
                if self.verify:
                    if models is None or c not in models:
                        raise ValueError("verify_model: the server must name every model")
                    setup["model_hash"] = model_hash(models[c].detach().cpu().numpy())
                asked[c] = ConfigRecord(dict(setup))
        left_out: dict[int, str] = {}

        replies = self._exchange(SECAGG_SETUP, asked, client_to_node)
        keys, counts, hashes = {}, {}, {}
        for client, content in replies.items():
            if isinstance(content, str):
                left_out[client] = content
                continue
            pk1, pk2, count = content.get("pk1"), content.get("pk2"), content.get(NUM_EXAMPLES)
            if not (isinstance(pk1, bytes) and isinstance(pk2, bytes)) or not (
                isinstance(count, int) and 0 < count <= MAX_EXAMPLES
            ):
                left_out[client] = "malformed SecAgg+ setup reply (keys, num-examples)"
                continue
            keys[client + 1], counts[client] = (pk1, pk2), count
            self._bytes += len(pk1) + len(pk2)
            if self.verify:
                hashes[client + 1] = content.get("model_hash", b"")
        if not keys:
            raise SecAggAbortedError("SecAgg+ setup: no node answered")
        for group in self._groups:
            group.run("receive_public_keys", keys)

        requests = {}
        for server in self._servers():
            for nid in sorted(server.keyed):
                sent = server.public_keys_for(nid)
                requests[nid - 1] = ConfigRecord(
                    {
                        SERVER_ROUND: server_round,
                        "ids": list(sent),
                        "pk1": [pk1 for pk1, _ in sent.values()],
                        "pk2": [pk2 for _, pk2 in sent.values()],
                        **({"hashes": [hashes[i] for i in sent]} if self.verify else {}),
                    }
                )
                self._bytes += sum(ID_BYTES + len(a) + len(b) for a, b in sent.values())
        replies = self._exchange(SECAGG_SHARE_KEYS, requests, client_to_node)
        ciphertexts = {}
        for client, content in replies.items():
            if isinstance(content, str):
                left_out[client] = content
                continue
            try:
                ciphertexts[client + 1] = _by_id(content, "ciphertexts")
            except (KeyError, TypeError, ValueError) as e:
                left_out[client] = f"malformed SecAgg+ share_keys reply: {e}"[:500]
                continue
            self._bytes += sum(ID_BYTES + len(c) for c in content["ciphertexts"])
        _check_consistency(left_out)
        for group in self._groups:
            group.run("receive_ciphertexts", ciphertexts)
        self._check_groups()

        self._scale = float(max(counts.values()))
        dropped = set(dropped)
        train = {}
        for server in self._servers():
            for nid in sorted(server.shared):
                if nid - 1 in dropped:
                    continue
                forwarded = server.ciphertexts_for(nid)
                train[nid - 1] = ConfigRecord(
                    {
                        SERVER_ROUND: server_round,
                        "scale": self._scale,
                        "ids": list(forwarded),
                        "ciphertexts": list(forwarded.values()),
                    }
                )
                self._bytes += sum(ID_BYTES + len(c) for c in forwarded.values())
        for group in self._groups:
            if group.server is None:
                left_out.update(
                    {
                        c: f"its SecAgg+ group failed: {group.failed}"
                        for c in group.clients
                        if c not in left_out and c not in dropped
                    }
                )
        self._seconds = time.perf_counter() - started
        return train, left_out

    def finish(
        self, replies: Iterable[Message], node_to_client: Mapping[int, int], dim: int
    ) -> SecureRound:
        """Collect the masked vectors, unmask each group's sum, decode FedAvg's means.

        Raises
        ------
        SecAggAbortedError
            Every group failed (too few shares of a needed secret arrived): the round fails,
            nothing revealed.
        """
        if self._grid is None or not self._groups:
            raise RuntimeError("SecureAggregation.finish called before begin")
        outcome = SecureRound(means=[], weights=[], members=[], num_examples={}, losses={})
        masked, plain = {}, {}
        for msg in replies:
            client = node_to_client.get(msg.metadata.src_node_id, -1)
            if msg.has_error():
                outcome.failed[client] = f"client error: {msg.error.reason}"[:500]
                continue
            checked = _masked_reply(msg.content, dim, self.settings.modulus_range)
            if isinstance(checked, str):
                outcome.rejected[client] = checked
                continue
            vector, (update, num_examples, loss, privacy) = checked
            if privacy is not None:
                outcome.privacy[client] = privacy
            masked[client + 1], plain[client] = vector, update.numpy()
            outcome.num_examples[client], outcome.losses[client] = num_examples, loss
            self._seconds += float(msg.content[METRICS].get(SECAGG_MASK_SECONDS, 0.0))
            self._bytes += 8 * vector.size
        _check_consistency(outcome.failed)
        started = time.perf_counter()
        for group in self._groups:
            group.run("receive_masked_vectors", masked)
        self._check_groups()
        requests = {}
        for server in self._servers():
            for nid in sorted(server.masked):
                active, dead = server.unmask_request(nid)
                requests[nid - 1] = ConfigRecord(
                    {SERVER_ROUND: self._round, "active": active, "dead": dead}
                )
                self._bytes += ID_BYTES * (len(active) + len(dead))
        replies_by_client = self._exchange(SECAGG_UNMASK, requests, _inverse(node_to_client))
        shares = {}
        for client, content in replies_by_client.items():
            if isinstance(content, str):
                continue  # a node that drops after masking: its vector is recovered all the same
            try:
                shares[client + 1] = _by_id(content, "shares")
            except (KeyError, TypeError, ValueError):
                continue  # a malformed answer counts as none
            self._bytes += sum(ID_BYTES + len(s) for s in content["shares"])
        errors, bounds = [], []
        for group in self._groups:
            server = group.server
            quantized_sum = group.run("unmask", shares)
            if server is None or quantized_sum is None:
                continue
            survivors = sorted(nid - 1 for nid in server.masked)
            total = decode_sum(quantized_sum, len(survivors), self.settings)
            weight = float(sum(outcome.num_examples[c] for c in survivors))
            mean = total * (self._scale / weight)
            plain_mean = sum(plain[c] * outcome.num_examples[c] for c in survivors) / weight
            errors.append(float(np.max(np.abs(mean - plain_mean))))
            bounds.append(mean_error_bound(len(survivors), self._scale, weight, self.settings))
            outcome.means.append(torch.from_numpy(mean))
            outcome.weights.append(weight)
            outcome.members.append(survivors)
        self._check_groups()
        self._seconds += time.perf_counter() - started
        outcome.groups_failed = [g.failed for g in self._groups if g.failed is not None]
        outcome.figures = {
            "secagg_error": max(errors),
            "secagg_bound": max(bounds),
            "secagg_s": self._seconds,
            "secagg_bytes": self._bytes / max(self._cohort_size, 1),
            "secagg_messages": self._messages,
            # The privacy cost of groups: the fewest updates any revealed sum hides a client in.
            "secagg_min_sum_size": min(len(members) for members in outcome.members),
        }
        if self.groups > 1:
            outcome.figures["secagg_groups"] = len(outcome.means)
        if self.verify:
            outcome.figures["model_inconsistency_detected"] = 0
        self._groups = []
        return outcome

    def _servers(self) -> list[SecAggServer]:
        return [g.server for g in self._groups if g.server is not None]

    def _check_groups(self) -> None:
        """Raise when every group has failed (with the first group's reason)."""
        if not self._servers():
            reasons = [g.failed for g in self._groups if g.failed is not None]
            self._groups = []
            raise SecAggAbortedError(reasons[0] if reasons else "SecAgg+: no group")

    def _setup_config(self, server_round: int, cohort: Cohort) -> ConfigRecord:
        s = self.settings
        return ConfigRecord(
            {
                SERVER_ROUND: server_round,
                "num_shares": s.num_shares,
                "reconstruction_threshold": s.reconstruction_threshold,
                "clipping_range": float(s.clipping_range),
                "quantization_range": s.quantization_range,
                "modulus_range": s.modulus_range,
                "num_nodes": cohort.num_nodes,
                "num_shares_resolved": cohort.num_shares,
                "threshold": cohort.threshold,
            }
        )

    def _exchange(
        self, action: str, records: Mapping[int, ConfigRecord], client_to_node: Mapping[int, int]
    ) -> dict[int, ConfigRecord | str]:
        """Send ``query.<action>`` with each client's record; its reply's record, or why not."""
        if self._grid is None:
            raise RuntimeError("no grid")
        node_to_client = {client_to_node[c]: c for c in records}
        messages = [
            Message(
                RecordDict({SECAGG_KEY: record}),
                dst_node_id=client_to_node[client],
                message_type=f"{MessageType.QUERY}.{action}",
            )
            for client, record in records.items()
        ]
        out: dict[int, ConfigRecord | str] = {}
        for reply in self._grid.send_and_receive(messages, timeout=self.timeout):
            client = node_to_client.get(reply.metadata.src_node_id)
            if client is None:
                continue
            if reply.has_error():
                out[client] = f"client error in SecAgg+ {action}: {reply.error.reason}"[:500]
                continue
            record = reply.content.get(SECAGG_KEY)
            out[client] = (
                record if isinstance(record, ConfigRecord) else f"malformed {action} reply"
            )
        self._messages += len(messages) + len(out)
        return out


def _check_consistency(left_out: Mapping[int, str]) -> None:
    """Fail the round when a node aborted because its neighbours got another model."""
    found = sorted(c for c, why in left_out.items() if ModelInconsistencyError.MARK in why)
    if found:
        raise ModelInconsistencyError(
            f"{ModelInconsistencyError.MARK} detected by clients {found}: they or their "
            "neighbours were sent another model"
        )


def _by_id(content: ConfigRecord, key: str) -> dict[int, bytes]:
    """A reply's ``ids`` and ``key`` lists as id → bytes (raises on a malformed reply)."""
    ids, values = content["ids"], content[key]
    if not isinstance(ids, list) or not isinstance(values, list):
        raise TypeError(f"ids and {key} must be lists")
    if not all(isinstance(v, bytes) for v in values):
        raise TypeError(f"{key} must be bytes")
    return dict(zip((int(i) for i in ids), values, strict=True))


def _inverse(node_to_client: Mapping[int, int]) -> dict[int, int]:
    return {c: n for n, c in node_to_client.items()}


def _masked_reply(
    content: RecordDict, dim: int, modulus: int
) -> tuple[np.ndarray, tuple[torch.Tensor, int, float, Any]] | str:
    """A secure train reply's masked vector and its checked clear part, or why it is rejected.

    The clear update (measurement only) and the metrics pass the same checks as a clear
    reply's (:func:`server.replies.check_reply`: a finite float update of length ``dim``, the
    example count, the loss, the privacy report).
    """
    try:
        vector = array_to_numpy(content[SECAGG_MASKED_KEY][SECAGG_MASKED_KEY])
        plain = array_update(content[SECAGG_PLAIN_KEY][UPDATE_KEY], dim)
        metrics = content[METRICS]
    except (KeyError, TypeError, ValueError) as e:
        return f"malformed secure reply: missing or unreadable {e}"
    if not isinstance(metrics, MetricRecord):
        return "malformed secure reply: no metrics record"
    if vector.dtype != np.int64 or vector.shape != (dim,):
        return (
            f"masked vector has dtype {vector.dtype} and shape {vector.shape}, "
            f"expected int64 ({dim},)"
        )
    if vector.size and (vector.min() < 0 or vector.max() >= modulus):
        return f"masked vector outside [0, {modulus})"
    checked = check_reply((plain, metrics))
    return checked if isinstance(checked, str) else (vector, checked)
