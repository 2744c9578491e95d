"""The run's probes together: who runs in a round, their figures, summary and state."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from fedsim.federation import Federation
from server.probes.base import PROBES, InsertedUpdates, Probe, RoundView
from server.server_data import ServerData

__all__ = ["ProbeSet"]


class ProbeSet:
    """Every probe a run's scenario asks for, run after each round.

    Parameters
    ----------
    probes : list of Probe
        The configured probes, in registry order.
    """

    def __init__(self, probes: list[Probe]) -> None:
        self.probes = probes
        self.round_figures: dict[str, Any] = {}
        self.last_figures: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_federation(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> ProbeSet:
        """Build every registered probe the scenario configures (validating its settings).

        Each is given the server's ``data`` (the held-out set, FLTrust's root set taken out).
        """
        probes = []
        for name in PROBES.names():
            probe = PROBES.get(name).from_scenario(fed, data, out_dir)
            if probe is not None:
                probes.append(probe)
        return cls(probes)

    def __bool__(self) -> bool:
        return bool(self.probes)

    def find(self, name: str) -> Probe | None:
        """The probe registered as ``name``, if the scenario configures it."""
        return next((p for p in self.probes if p.name == name), None)

    def observe(self, view: RoundView) -> None:
        """Run each probe whose rounds include ``view.round``; keep their figures."""
        self.round_figures = {}
        for probe in self.probes:
            if view.round not in probe.rounds:
                continue
            figures = probe.observe(view)
            if figures:
                self.round_figures.update(figures)
                self.last_figures[probe.name] = figures

    def inserted_updates(self, server_round: int, dim: int) -> InsertedUpdates | None:
        """Every probe's inserted updates for ``server_round`` together (None if there are none)."""
        parts = [p.inserted_updates(server_round, dim) for p in self.probes]
        parts = [p for p in parts if p is not None and p.count > 0]
        if not parts:
            return None
        total = torch.stack([p.direction_sum.to(torch.float64) for p in parts]).sum(dim=0)
        return InsertedUpdates(total, sum(p.count for p in parts))

    def crafted_models(
        self, server_round: int, global_weights: torch.Tensor, clients: list[int]
    ) -> dict[int, torch.Tensor]:
        """The weights each probe's malicious server sends instead of the global model.

        Raises
        ------
        ValueError
            Two probes craft the model of one round.
        """
        crafted: dict[int, torch.Tensor] = {}
        for probe in self.probes:
            mine = probe.crafted_models(server_round, global_weights, clients)
            if mine and crafted:
                raise ValueError(f"two probes craft the models of round {server_round}")
            crafted.update(mine)
        return crafted

    def round_metrics(self) -> dict[str, Any]:
        """The figures of the round observed last (for its ``metrics.jsonl`` line)."""
        return dict(self.round_figures)

    def summary(self) -> dict[str, Any]:
        """The probes' figures for ``summary.json``.

        ``final_<figure>`` for each probe's last scalar figures, the probes' own summaries, and
        ``probes``: each probe's name, threat direction, threat model, rounds and the names
        of its figures (the per-run report reads them).
        """
        out: dict[str, Any] = {}
        for probe in self.probes:
            for key, value in self.last_figures.get(probe.name, {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"final_{key}"] = value if math.isfinite(value) else None
            out.update(probe.summary())
        if self.probes:
            out["probes"] = [
                {**probe.describe(), "figures": sorted(self.last_figures.get(probe.name, {}))}
                for probe in self.probes
            ]
        return out

    def state_dict(self) -> dict[str, Any]:
        """Each probe's state and last figures, by probe name (for checkpoints)."""
        return {
            probe.name: {
                "state": probe.state_dict(),
                "last": self.last_figures.get(probe.name, {}),
            }
            for probe in self.probes
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        for probe in self.probes:
            if probe.name in state:
                probe.load_state_dict(state[probe.name]["state"])
                if state[probe.name]["last"]:
                    self.last_figures[probe.name] = dict(state[probe.name]["last"])
