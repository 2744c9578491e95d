"""Who is audited by membership inference: members, non-members, their clients, seeded.

Shared by the membership probe and by the orchestration that trains its reference federations
(:mod:`fedsim.run.references`), so both see the same examples in the same order. Every draw is
keyed by (scenario seed, ``Stream.MEMBERSHIP``, purpose).

**Example level.** Members: ``targets`` training examples drawn from the partitions of the
*member clients* — the honest clients the server sampled at least once in rounds 1..r₀, r₀ the
first audited round, so every member was trained on by the target federation before each
audited round (with partial participation the partitions of never-sampled clients are left
out: they are training data the model never saw). Non-members: as many examples of the
held-out pool (the server's held-out set, :class:`~server.server_data.ServerData`: the test
set minus FLTrust's root set), never trained on, same distribution.
Each non-member gets a seeded *home client* among the member clients: the client a reference
federation adds it to when it is "in", and the client whose updates the server's update
attack compares it with.

**Client level.** Members: up to ``targets`` member clients, each its whole partition;
non-members: as many *held-out clients*, disjoint chunks of the held-out pool with the member
clients' partition sizes (under full participation no sampled-out client exists, so held-out
clients are the only non-members that always exist).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedsim.errors import ScenarioError
from fedsim.federation import Federation
from fedsim.membership import membership_split, reference_masks
from fedsim.scenario import MembershipConfig, Scenario
from fedsim.seeding import Stream, derive_seed, numpy_rng
from server.sampling import sampled_by
from server.server_data import ServerData

__all__ = [
    "MembershipTargets",
    "audited_rounds",
    "membership_targets",
    "reference_in_mask",
]

MAX_POPULATION = 1000
"""At most this many held-out non-targets serve as RMIA's population samples z."""


@dataclass(frozen=True)
class MembershipTargets:
    """The audited examples (example level) or data sets (client level), members first.

    Attributes
    ----------
    x, y : torch.Tensor
        Every audited example: ``(n, ...)`` inputs and ``(n,)`` labels.
    group : numpy.ndarray
        ``(n,)`` the candidate each example belongs to: its own index at example level, its
        data set at client level.
    members : numpy.ndarray
        ``(K,)`` booleans per candidate (K = n at example level).
    home : numpy.ndarray
        ``(K,)`` each candidate's client: a member's owner, a non-member's home client
        (example level); the client itself, or −1 for a held-out client (client level).
    train_index : numpy.ndarray
        Training-pool indices of the member examples (the first ones of ``x``).
    population : tuple of torch.Tensor
        ``(x, y)`` held-out examples that are no target (RMIA's z).
    """

    x: torch.Tensor
    y: torch.Tensor
    group: np.ndarray
    members: np.ndarray
    home: np.ndarray
    train_index: np.ndarray
    population: tuple[torch.Tensor, torch.Tensor]

    @property
    def size(self) -> int:
        """K, the number of candidates (members and non-members)."""
        return int(self.members.size)

    @property
    def extra(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The non-member examples (example level), which references may add to clients."""
        k = self.train_index.size
        return self.x[k:], self.y[k:]


def audited_rounds(config: MembershipConfig, scenario: Scenario) -> list[int]:
    """``privacy.membership.rounds`` sorted (default: the last round).

    Raises
    ------
    ScenarioError
        A round past the run's end.
    """
    rounds = sorted(set(config.rounds or [scenario.rounds]))
    if rounds[-1] > scenario.rounds:
        raise ScenarioError(
            "privacy.membership.rounds", config.rounds, f"rounds 1..{scenario.rounds} of the run"
        )
    return rounds


def membership_targets(
    fed: Federation, data: ServerData, config: MembershipConfig
) -> MembershipTargets:
    """The scenario's audited examples or data sets (see the module docstring).

    Non-members come from ``data.held_out``, the server's held-out set.

    Raises
    ------
    ScenarioError
        ``privacy.membership.targets`` asks for more than the member clients or the held-out
        pool hold; no honest client is sampled by the first audited round.
    """
    scenario = fed.scenario
    first = audited_rounds(config, scenario)[0]
    clients = [c for c in sampled_by(scenario, first) if c not in fed.malicious]
    if not clients:
        raise ScenarioError(
            "privacy.membership.rounds",
            config.rounds,
            f"a round by which an honest client has trained (none by round {first})",
        )
    x_out, y_out = data.held_out
    if config.level == "client":
        return _client_targets(fed, config, clients, x_out, y_out)
    owner = np.concatenate([np.full(len(fed.data.partitions[c]), c) for c in clients])
    pool = np.concatenate([fed.data.partitions[c] for c in clients])
    k = config.targets
    if k > min(pool.size, len(y_out)):
        raise ScenarioError(
            "privacy.membership.targets",
            k,
            f"at most the {pool.size} training examples of the clients sampled by round "
            f"{first} and the {len(y_out)} held-out examples",
        )
    offset = len(fed.data.dataset.y_train)  # held-out indices shifted past the training pool
    split = membership_split(
        pool, offset + np.arange(len(y_out)), k, derive_seed(scenario.seed, Stream.MEMBERSHIP, 0)
    )
    members, outside = split.members, split.non_members - offset
    owner_of = dict(zip(pool.tolist(), owner.tolist(), strict=True))
    owners = np.array([owner_of[int(i)] for i in members], dtype=np.int64)
    homes = numpy_rng(scenario.seed, Stream.MEMBERSHIP, 1).choice(clients, size=k)
    rest = np.setdiff1d(np.arange(len(y_out)), outside)
    rest = numpy_rng(scenario.seed, Stream.MEMBERSHIP, 2).permutation(rest)[:MAX_POPULATION]
    dataset = fed.data.dataset
    return MembershipTargets(
        x=torch.cat([dataset.x_train[members], x_out[outside]]),
        y=torch.cat([dataset.y_train[members], y_out[outside]]),
        group=np.arange(2 * k),
        members=np.r_[np.ones(k, bool), np.zeros(k, bool)],
        home=np.concatenate([owners, homes]).astype(np.int64),
        train_index=members,
        population=(x_out[rest], y_out[rest]),
    )


def _client_targets(
    fed: Federation,
    config: MembershipConfig,
    clients: list[int],
    x_out: torch.Tensor,
    y_out: torch.Tensor,
) -> MembershipTargets:
    scenario = fed.scenario
    rng = numpy_rng(scenario.seed, Stream.MEMBERSHIP, 0)
    chosen = sorted(int(c) for c in rng.permutation(clients)[: config.targets])
    sizes = [len(fed.data.partitions[c]) for c in chosen]
    fits = int(np.searchsorted(np.cumsum(sizes), len(y_out), side="right"))
    if fits < 1:
        raise ScenarioError(
            "privacy.membership.level",
            "client",
            f"held-out clients of the member clients' sizes ({sizes[:5]}...) from the "
            f"{len(y_out)} held-out examples; use level: example or a larger data.test_fraction",
        )
    chosen, sizes = chosen[:fits], sizes[:fits]
    order = torch.from_numpy(numpy_rng(scenario.seed, Stream.MEMBERSHIP, 1).permutation(len(y_out)))
    chunks = torch.split(order[: sum(sizes)], sizes)
    dataset = fed.data.dataset
    member_index = [torch.from_numpy(fed.data.partitions[c]) for c in chosen]
    xs = [dataset.x_train[i] for i in member_index] + [x_out[i] for i in chunks]
    ys = [dataset.y_train[i] for i in member_index] + [y_out[i] for i in chunks]
    k = len(chosen)
    return MembershipTargets(
        x=torch.cat(xs),
        y=torch.cat(ys),
        group=np.concatenate([np.full(len(v), j) for j, v in enumerate(ys)]),
        members=np.r_[np.ones(k, bool), np.zeros(k, bool)],
        home=np.r_[np.array(chosen, np.int64), np.full(k, -1, np.int64)],
        train_index=np.concatenate([p.numpy() for p in member_index]),
        population=(x_out[:0], y_out[:0]),
    )


def reference_in_mask(
    config: MembershipConfig, targets: MembershipTargets, seed: int
) -> np.ndarray:
    """``(R, n)`` which audited example each reference federation trains on.

    Online: each example in exactly half of them (:func:`reference_masks`); offline: none.
    """
    if not config.online or config.references < 2:
        return np.zeros((config.references, targets.size), bool)
    return reference_masks(config.references, targets.size, derive_seed(seed, Stream.MEMBERSHIP, 3))
