"""The watermark probe (data → data): the owner's watermark, its cost, and a thief's removal.

Configured by the top-level ``watermark:`` block (the server's WAFFLE embedding itself is a
server part, :class:`~fedsim.watermark.WaffleEmbedding`). Threat model ``global_model``: the
thief holds a leaked copy of the global model's weights and labelled public images of the task
(a seeded share of the held-out set, :mod:`server.probes.held_out`). In each chosen round
(default: every round) the probe reports

- ``watermark_accuracy``: the global model's accuracy on the run's trigger set (chance is
  1/C without the watermark; ``embed: false`` measures exactly that);
- ``watermark_clean_accuracy``: the global model's accuracy on the probe's evaluation images
  (the held-out set minus the thief's share);
- with embedding, the same two figures of the round's aggregate *before* the server retrained
  it (``watermark_accuracy_before_embedding``, ``watermark_clean_accuracy_before_embedding``)
  and ``watermark_clean_cost``, their clean-accuracy difference (before − after: what this
  round's embedding cost the model; negative when it happened to help).

In its last round, with ``removal:``, the thief fine-tunes and prunes its copy
(:func:`~fedsim.watermark.removal_curve`); every attempt's watermark and clean accuracy go to
``watermark_removal`` (and ``RUN_DIR/watermark/removal.json`` + ``.png``), and
``removal_watermark_accuracy`` / ``removal_clean_accuracy`` are those of the thief's best
attempt: the lowest watermark accuracy among attempts whose clean accuracy stays within
``tolerance`` of the copy's (the copy itself counts, so a removal that breaks the model does
not). ``watermark_removed`` in ``summary.json`` says whether that attempt fell below the
owner's ``verify_threshold`` (``null`` when the leaked copy did not reach it in the first place,
e.g. with ``embed: false``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from fedsim.federation import Federation
from fedsim.params import load_flat_params
from fedsim.scenario import RemovalConfig, WatermarkConfig
from fedsim.seeding import Stream, torch_generator
from fedsim.training import TrainSettings, evaluate
from fedsim.watermark import RemovalPoint, removal_curve, run_trigger_set, watermark_accuracy
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.probes.held_out import held_out_split
from server.probes.theft_plots import save_removal_chart
from server.server_data import ServerData

__all__ = ["WatermarkProbe", "best_removal"]

log = logging.getLogger(__name__)


def best_removal(points: list[RemovalPoint], tolerance: float) -> RemovalPoint:
    """The thief's best attempt: lowest watermark accuracy keeping clean accuracy in tolerance.

    ``points[0]`` is the untouched copy; an attempt qualifies when its clean accuracy is at
    least the copy's minus ``tolerance`` (the copy always does).

    Examples
    --------
    >>> points = [
    ...     RemovalPoint("none", "0", 1.0, 0.95),
    ...     RemovalPoint("prune", "0.9", 0.05, 0.48),  # removes it, and the model with it
    ...     RemovalPoint("fine_tune", "lr=0.05 epochs=20", 0.1, 0.93),
    ... ]
    >>> best_removal(points, tolerance=0.05).method
    'fine_tune'
    """
    floor = points[0].clean_accuracy - tolerance
    kept = [p for p in points if p.clean_accuracy >= floor - 1e-12]
    return min(kept, key=lambda p: p.watermark_accuracy)


@PROBES.register("watermark")
class WatermarkProbe(Probe):
    """Trigger accuracy of the global model, the embedding's cost, and removal by a thief.

    Parameters
    ----------
    fed : Federation
        The run's data and model factory (the server's process).
    data : ServerData
        The server's held-out set (FLTrust's root set taken out): the thief's public images
        and the evaluation images.
    out_dir : Path, optional
        The run directory; the removal table goes to ``out_dir / "watermark"``.
    """

    name = "watermark"
    direction = "data→data"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        config = fed.scenario.watermark
        if config is None:
            raise ValueError("the scenario has no watermark block")
        self.fed = fed
        self.config: WatermarkConfig = config
        self.out_dir = out_dir
        self.trigger = run_trigger_set(fed)
        removal = config.removal
        fraction = removal.public_fraction if removal is not None else 0.5
        key = "watermark.removal.public_fraction"
        self.split = held_out_split(data, fed.scenario.seed, fraction, key)
        self.removal: list[dict[str, Any]] = []
        self.removed: bool | None = None

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> WatermarkProbe | None:
        """The probe ``watermark`` asks for (``None`` without that block).

        Raises
        ------
        ScenarioError
            Rounds past the run's end, or a public share leaving no evaluation images.
        """
        config, scenario = fed.scenario.watermark, fed.scenario
        if config is None:
            return None
        check_rounds("watermark.rounds", config.rounds, scenario.rounds)
        return cls(fed, data, out_dir)

    @property
    def threat_model(self) -> str:
        """``global_model``: a leaked copy of the weights."""
        return "global_model"

    @property
    def rounds(self) -> list[int]:
        """The rounds measured (``watermark.rounds``, default every round)."""
        return list(self.config.rounds or range(1, self.fed.scenario.rounds + 1))

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Measure the round's global model (and its aggregate before embedding)."""
        model = self.fed.model("watermark-probe")
        split = self.split
        figures: dict[str, Any] = {}
        if self.config.embed and view.aggregate is not None:
            load_flat_params(model, view.aggregate)
            clean_before = evaluate(model, split.eval_x, split.eval_y).accuracy
            figures["watermark_accuracy_before_embedding"] = watermark_accuracy(model, self.trigger)
            figures["watermark_clean_accuracy_before_embedding"] = clean_before
        load_flat_params(model, view.model)
        clean = evaluate(model, split.eval_x, split.eval_y).accuracy
        figures["watermark_accuracy"] = watermark_accuracy(model, self.trigger)
        figures["watermark_clean_accuracy"] = clean
        if "watermark_clean_accuracy_before_embedding" in figures:
            figures["watermark_clean_cost"] = (
                figures["watermark_clean_accuracy_before_embedding"] - clean
            )
        if self.config.removal is not None and view.round == max(self.rounds):
            figures.update(self._removal(view.round, model, self.config.removal))
        log.info("round %d watermark: %s", view.round, figures)
        return figures

    def _removal(
        self, server_round: int, model: nn.Module, removal: RemovalConfig
    ) -> dict[str, Any]:
        split = self.split
        tunes = [
            TrainSettings(f.epochs, removal.batch_size, f.lr, removal.momentum)
            for f in removal.fine_tune
        ]
        generator = torch_generator(self.fed.scenario.seed, Stream.WATERMARK, server_round, 1)
        points = removal_curve(
            model,
            self.trigger,
            (split.public_x, split.public_y),
            (split.eval_x, split.eval_y),
            tunes,
            removal.prune,
            generator,
        )
        best = best_removal(points, removal.tolerance)
        self.removal = [p._asdict() for p in points]
        verified = points[0].watermark_accuracy >= removal.verify_threshold
        self.removed = best.watermark_accuracy < removal.verify_threshold if verified else None
        self._save(server_round, points, removal)
        return {
            "watermark_removal": self.removal,
            "removal_watermark_accuracy": best.watermark_accuracy,
            "removal_clean_accuracy": best.clean_accuracy,
        }

    def _save(self, server_round: int, points: list[RemovalPoint], removal: RemovalConfig) -> None:
        if self.out_dir is None:
            return
        folder = self.out_dir / "watermark"
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "round": server_round,
            "thief_images": len(self.split.public_y),
            "eval_images": len(self.split.eval_y),
            "verify_threshold": removal.verify_threshold,
            "tolerance": removal.tolerance,
            "points": self.removal,
        }
        (folder / "removal.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        title = f"round {server_round}: watermark removal from a leaked copy"
        save_removal_chart(points, removal.verify_threshold, folder / "removal.png", title)

    def summary(self) -> dict[str, Any]:
        """The removal table and whether the watermark was removed, for ``summary.json``."""
        if not self.removal:
            return {}
        return {"watermark_removal": self.removal, "watermark_removed": self.removed}

    def state_dict(self) -> dict[str, Any]:
        """The removal results (computed in the last round only)."""
        return {"removal": list(self.removal), "removed": self.removed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the removal results after a resume."""
        self.removal = list(state.get("removal", []))
        self.removed = state.get("removed")
