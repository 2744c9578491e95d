"""Reference ("shadow") models of membership inference, cached in ``RUN_DIR/membership/``.

The orchestration trains the reference federations (:mod:`fedsim.run.references`) and writes
them here; the membership probe (:mod:`server.probes.membership`) reads them. A resumed run
finds them and does not train them again. The file is read with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fedsim.scenario import Scenario, scenario_to_dict

__all__ = [
    "REFERENCE_DIR",
    "REFERENCE_FILE",
    "ReferenceModels",
    "load_references",
    "reference_fingerprint",
    "save_references",
]

REFERENCE_DIR = "membership"
REFERENCE_FILE = "references.pt"
FREE_KEYS = ("runtime", "ray", "vectorized", "checkpoint_every", "sweep")
"""Scenario keys that do not change the reference models (nor the target's numbers)."""


@dataclass
class ReferenceModels:
    """The global models of R reference federations at the rounds the probe needs.

    Attributes
    ----------
    fingerprint : str
        :func:`reference_fingerprint` of the scenario they were trained for.
    rounds : list of int
        The rounds recorded, increasing.
    weights : torch.Tensor
        ``(R, len(rounds), d)`` float32 flat global weights.
    in_mask : torch.Tensor
        ``(R, n)`` booleans: reference r trained on audited example i.
    seconds : float
        Wall-clock seconds their training took.
    runtime : str
        The runtime they were trained on.
    """

    fingerprint: str
    rounds: list[int]
    weights: torch.Tensor
    in_mask: torch.Tensor
    seconds: float
    runtime: str

    def at(self, server_round: int) -> torch.Tensor:
        """``(R, d)`` the references' global weights after ``server_round``."""
        return self.weights[:, self.rounds.index(server_round)]


def reference_fingerprint(scenario: Scenario) -> str:
    """A hash of every scenario setting that changes the reference models."""
    raw = scenario_to_dict(scenario)
    for key in FREE_KEYS:
        raw.pop(key, None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()


def save_references(run_dir: str | os.PathLike[str], refs: ReferenceModels) -> Path:
    """Write ``refs`` to ``run_dir/membership/references.pt`` atomically; return the path."""
    directory = Path(run_dir) / REFERENCE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REFERENCE_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(asdict(refs), tmp)
    os.replace(tmp, path)
    return path


def load_references(run_dir: str | os.PathLike[str]) -> ReferenceModels | None:
    """The cached references of ``run_dir``, or ``None`` if there are none."""
    path = Path(run_dir) / REFERENCE_DIR / REFERENCE_FILE
    if not path.is_file():
        return None
    raw = torch.load(path, weights_only=True)
    return ReferenceModels(**raw)
