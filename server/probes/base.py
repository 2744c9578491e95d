"""The probe interface: everything that observes a run without being part of training.

A probe (gradient inversion, membership inference, evasion evaluation, privacy audits, model
extraction) runs inside the server process in the rounds it names. After each round's
aggregation the server hands every probe a :class:`RoundView` (what the round's parties
could see), whatever the round's outcome; a probe returns the figures that go into that
round's ``metrics.jsonl`` line. Its last round's scalar figures become ``final_<figure>`` keys
of ``summary.json`` (so sweeps and reports pick them up), plus whatever :meth:`Probe.summary`
adds. A probe declares

- its **threat direction** (:data:`DIRECTIONS`), which organises the per-run report;
- its **threat model** (:data:`THREAT_MODELS`): what the attacker behind it may see. The view
  holds more than any one threat model allows; a probe reads only what its model grants.

A probe that audits central DP may also *insert* updates into a round's aggregation
(:meth:`Probe.inserted_updates`: canary clients); the server adds them to the DP-FedAvg sum
before the noise and counts them as no client anywhere.

A probe is built with the server's data (:class:`~server.server_data.ServerData`: the held-out
set with FLTrust's root set taken out), so every probe measures on the examples the server
evaluates on and none on an example the server trained on.

Probes draw every random number from generators seeded by the scenario (never global state),
keep what they carry across rounds in :meth:`Probe.state_dict` (checkpoints and resumes) and
run on the run's device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from fedsim.components import Checkpointable
from fedsim.errors import ScenarioError
from fedsim.federation import Federation
from fedsim.registry import Registry
from fedsim.threats import DIRECTIONS, THREAT_MODELS
from server.replies import ClientUpdate
from server.server_data import ServerData

__all__ = [
    "DIRECTIONS",
    "PROBES",
    "THREAT_MODELS",
    "InsertedUpdates",
    "Probe",
    "RevealedSum",
    "RoundView",
]


@dataclass(frozen=True)
class RevealedSum:
    """A sum secure aggregation revealed to the server: FedAvg's mean of its clients' updates.

    Attributes
    ----------
    mean : torch.Tensor
        ``(d,)`` float64 ``Σ n_i Δ_i / Σ n_i`` over ``members`` (decoded, quantization error
        included).
    num_examples : dict[int, int]
        ``n_i`` of each member (public under SecAgg+, as in Flower).
    """

    mean: torch.Tensor
    num_examples: dict[int, int]

    @property
    def members(self) -> list[int]:
        """The clients whose updates are in the sum, in id order."""
        return sorted(self.num_examples)


@dataclass(frozen=True)
class RoundView:
    """What the parties of one finished round could see.

    Attributes
    ----------
    round : int
        The run's round number.
    before : torch.Tensor
        The global weights sent to the round's clients.
    after : torch.Tensor or None
        The global weights after the round; ``None`` when the round was skipped (no update
        arrived, or the rule refused the round), so the model did not change.
    updates : list of ClientUpdate
        The round's checked client updates as they arrived (before any colluding attack,
        defence or central DP), ordered by client id.
    accounted : dict
        The privacy accounted after the round (``epsilon``, ``delta``, ``epsilon_central`` ...
        as in the round's metrics line); empty without DP.
    aggregate : torch.Tensor or None
        The rule's new global weights before the server's own retraining of them (the WAFFLE
        watermark embedding); equal to ``after`` when the server does not retrain, ``None``
        when the round was skipped.
    sums : list of RevealedSum
        Under secure aggregation, the sums the protocol revealed (one per group; ``updates``
        is then empty); empty in the clear.
    """

    round: int
    before: torch.Tensor
    after: torch.Tensor | None
    updates: list[ClientUpdate]
    accounted: dict[str, Any] = field(default_factory=dict)
    aggregate: torch.Tensor | None = None
    sums: list[RevealedSum] = field(default_factory=list)

    @property
    def model(self) -> torch.Tensor:
        """The global model at the end of the round (``before`` if the round was skipped)."""
        return self.before if self.after is None else self.after


@dataclass(frozen=True)
class InsertedUpdates:
    """Unit-norm updates a probe inserts into one round's central-DP sum.

    Attributes
    ----------
    direction_sum : torch.Tensor
        ``(d,)`` float64 sum of the inserted unit directions cⱼ. DP-FedAvg sends each at its
        clip norm S (what clipping lets through of any update of norm ≥ S along cⱼ), so the sum
        gains S·Σcⱼ before the noise.
    count : int
        How many were inserted (never counted as clients).
    """

    direction_sum: torch.Tensor
    count: int


class Probe(Checkpointable, ABC):
    """Base class of every probe.

    Subclasses set ``name`` (the registry name; by convention the scenario block that
    configures it) and ``direction``, implement :meth:`from_scenario`, :attr:`threat_model`,
    :attr:`rounds` and :meth:`observe`, and override :meth:`summary` and the state methods
    when they have something to add or carry.
    """

    name: ClassVar[str] = "probe"
    direction: ClassVar[str] = "model→data"

    @classmethod
    @abstractmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> Probe | None:
        """The probe the run's scenario asks for, or ``None`` if it does not ask for one.

        ``data`` is the server's held-out set (FLTrust's root set taken out), the only
        held-out examples a probe may measure on; ``out_dir`` the run directory, if any.

        Raises
        ------
        ScenarioError
            The probe's settings are invalid (naming the key path).
        """

    @property
    @abstractmethod
    def threat_model(self) -> str:
        """What the probe's attacker may see: a key of :data:`THREAT_MODELS`."""

    @property
    @abstractmethod
    def rounds(self) -> Collection[int]:
        """The rounds the probe runs in."""

    @abstractmethod
    def observe(self, view: RoundView) -> dict[str, Any]:
        """Run the probe on a finished round; return the figures for its metrics line."""

    def summary(self) -> dict[str, Any]:
        """Figures over the whole run for ``summary.json``, beyond the ``final_*`` ones."""
        return {}

    def inserted_updates(self, server_round: int, dim: int) -> InsertedUpdates | None:
        """Updates to add to ``server_round``'s central-DP sum (default: none)."""
        return None

    def crafted_models(
        self, server_round: int, global_weights: torch.Tensor, clients: list[int]
    ) -> dict[int, torch.Tensor]:
        """Weights a malicious server sends ``clients`` instead of the global model (none here).

        The strategy sends them in ``server_round``'s train messages, and leaves the global
        model unchanged in that round (the clients' updates are relative to crafted weights).
        """
        return {}

    def describe(self) -> dict[str, Any]:
        """The probe's identity for ``summary.json`` and the per-run report."""
        return {
            "name": self.name,
            "direction": self.direction,
            "threat_model": self.threat_model,
            "rounds": sorted(self.rounds),
        }


PROBES: Registry[type[Probe]] = Registry("probe")


def check_rounds(path: str, rounds: list[int] | None, last: int) -> None:
    """Raise a ScenarioError at ``path`` if a probe's ``rounds`` go past the run's ``last``."""
    if rounds is not None and any(r > last for r in rounds):
        raise ScenarioError(path, rounds, f"rounds 1..{last} of the run")
