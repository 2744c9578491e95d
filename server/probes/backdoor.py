"""The backdoor probe (data → model): the attack success rate of a backdoor, and its lifespan.

Active whenever the scenario's attack is a backdoor (a :class:`~fedsim.attacks.Backdoor`:
``backdoor``, ``dba``, ...; or the text backdoor :class:`~fedsim.attacks.TextBackdoor`), with
no scenario block of its own. After every round it stamps the backdoor's whole trigger on the
server's held-out examples (FLTrust's root set taken out) and reports ``asr``
(:func:`~fedsim.attacks.backdoor_asr`: the share of the examples not of the target class that
the global model classifies as the target; on text :func:`~fedsim.attacks.text_backdoor_asr`:
the share of completion characters predicted after the trigger, teacher-forced), so
``summary.json`` gets ``final_asr``, the last round's.

When the attack window closes before the run's last round, ``summary.json`` also gets
``backdoor_lifespan`` (:func:`~fedsim.attacks.backdoor_lifespan`): the rounds from the last
poisoned round (the last round of the window in which a malicious client was sampled) until the
ASR falls below 0.5; absent when the attack never stops within the run, or never ran.

Threat model ``global_model``: the attacker triggers the backdoor in the deployed model, whose
weights any client holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedsim.attacks import (
    Backdoor,
    TextBackdoor,
    backdoor_asr,
    backdoor_lifespan,
    text_backdoor_asr,
)
from fedsim.federation import Federation
from fedsim.params import load_flat_params
from server.probes.base import PROBES, Probe, RoundView
from server.sampling import sample_clients
from server.server_data import ServerData

__all__ = ["BackdoorProbe"]


@PROBES.register("backdoor")
class BackdoorProbe(Probe):
    """The ASR of the scenario's backdoor on the global model of every round.

    Parameters
    ----------
    fed : Federation
        The run's attack (a backdoor), model factory and malicious set.
    data : ServerData
        The server's held-out set (FLTrust's root set taken out): the examples stamped.
    out_dir : Path, optional
        Unused (the probe writes no pictures).

    Raises
    ------
    ValueError
        The scenario's attack is not a backdoor.
    """

    name = "backdoor"
    direction = "data→model"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        if not isinstance(fed.attack, (Backdoor, TextBackdoor)):
            raise ValueError(f"the backdoor probe needs a backdoor attack, got {fed.attack!r}")
        self.fed, self.attack = fed, fed.attack
        self.x, self.y = data.held_out
        self.asr: dict[int, float] = {}
        self.last_poisoned: int | None = None

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> BackdoorProbe | None:
        """The probe for a backdoor attack (``None`` for any other attack, or none)."""
        if not isinstance(fed.attack, (Backdoor, TextBackdoor)):
            return None
        return cls(fed, data, out_dir)

    @property
    def threat_model(self) -> str:
        """``global_model``: the trigger is shown to the deployed model."""
        return "global_model"

    @property
    def rounds(self) -> range:
        """Every round of the run."""
        return range(1, self.fed.scenario.rounds + 1)

    def observe(self, view: RoundView) -> dict[str, Any]:
        """The ASR of the round's global model; note the round if it was poisoned."""
        model = self.fed.model("backdoor")
        load_flat_params(model, view.model)
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            predict = lambda xb: model(xb.to(device))  # noqa: E731
            if isinstance(self.attack, TextBackdoor):
                asr = text_backdoor_asr(predict, self.x, self.attack)
            else:
                asr = backdoor_asr(predict, self.x, self.y, self.attack)
        self.asr[view.round] = asr
        scenario = self.fed.scenario
        if scenario.attack.active(view.round) and any(
            c in self.fed.malicious for c in sample_clients(scenario, view.round)
        ):
            self.last_poisoned = view.round
        return {"asr": asr}

    def summary(self) -> dict[str, Any]:
        """``backdoor_lifespan`` when the attack window closed before the last measured round.

        (``final_asr`` is the probe set's ``final_<figure>`` of the last round's ``asr``.)
        """
        stop = self.fed.scenario.attack.stop_round
        if stop is None or not self.asr or stop >= max(self.asr) or self.last_poisoned is None:
            return {}
        return {"backdoor_lifespan": backdoor_lifespan(self.asr, self.last_poisoned)}

    def state_dict(self) -> dict[str, Any]:
        """The ASR of every round so far and the last poisoned round (the lifespan needs both)."""
        return {
            "asr": {str(r): v for r, v in self.asr.items()},
            "last_poisoned": self.last_poisoned,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state after a resume."""
        self.asr = {int(r): float(v) for r, v in state.get("asr", {}).items()}
        self.last_poisoned = state.get("last_poisoned")
