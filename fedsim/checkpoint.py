"""Checkpoints: ``checkpoint.pt`` in the run directory, rewritten every ``checkpoint_every`` rounds.

A checkpoint holds everything the server carries from one round to the next: the round
number, the global weights, the aggregator's state (FoolsGold's histories, the generators of
randomised rules and stages), the DP accounting, the server's copy of the clients' node
states (:mod:`server.client_state`), the inversion probe's scores and the finished rounds'
metrics records. Every other random draw in fedsim is keyed by (seed, stream, round, client),
so nothing else is needed for a resumed run to continue exactly as the uninterrupted one.

The file is written with ``torch.save`` to a temporary name, fsynced and renamed, so a
checkpoint is never half-written; it is read with ``torch.load(weights_only=True)``, which
rebuilds tensors, numbers, strings, lists and dicts only — never arbitrary pickled objects.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from fedsim.errors import ScenarioError

__all__ = ["CHECKPOINT_FILE", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 2


@dataclass
class Checkpoint:
    """The server's state after round ``round``.

    Attributes
    ----------
    round : int
        The last finished round.
    weights : torch.Tensor
        The global model's flat weights after that round.
    history : list of dict
        The finished rounds' metrics records (the first ``round`` lines of ``metrics.jsonl``).
    aggregator : dict
        ``aggregator.state_dict()``.
    privacy : dict
        ``ServerPrivacy.state_dict()``.
    clients : dict
        ``ClientStateMirror.state_dict()``.
    probes : dict
        ``ProbeSet.state_dict()``: each probe's state and last figures, by name.
    """

    round: int
    weights: torch.Tensor
    history: list[dict[str, Any]]
    aggregator: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(run_dir: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``run_dir/checkpoint.pt`` atomically; return the path."""
    path = Path(run_dir) / CHECKPOINT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT_VERSION, **asdict(checkpoint)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir: str | os.PathLike[str]) -> Checkpoint | None:
    """Read ``run_dir/checkpoint.pt``; ``None`` if the run has not written one yet.

    Raises
    ------
    ScenarioError
        The file is not a checkpoint fedsim wrote (unreadable, or objects other than tensors
        and plain data in it, which ``weights_only`` loading refuses).
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ScenarioError(
            "--resume", str(path), f"a checkpoint.pt written by fedsim ({first})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise ScenarioError(
            "--resume", str(path), f"a fedsim checkpoint of format {FORMAT_VERSION}"
        )
    data.pop("format")
    try:
        return Checkpoint(**data)
    except TypeError as e:
        raise ScenarioError("--resume", str(path), f"a complete fedsim checkpoint ({e})") from None
