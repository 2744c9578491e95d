"""The model-extraction probe (model → model): how well an outsider copies the global model.

Configured by the top-level ``extraction:`` block. Threat model ``query``: the attacker sees
only the answers of the round's global model behind a prediction API
(:class:`~fedsim.extraction.Victim`: ``probabilities``, ``top1`` or ``rounded`` answers, a query
budget). In each chosen round (default: the last) the probe

1. wraps the round's global model as the victim,
2. runs Knockoff Nets or Copycat (:data:`~fedsim.extraction.EXTRACTION_ATTACKS`) with the
   budget ``queries`` on the attacker's pool: ``public`` images (a seeded share of the
   held-out set, :mod:`server.probes.held_out`), the same images with permuted pixels, or
   uniform noise,
3. scores the surrogate on the rest of the held-out set: ``extraction_fidelity`` (top-1
   agreement with the victim) and ``extraction_accuracy`` (on the true labels), next to the
   victim's own ``extraction_victim_accuracy``.

With ``budgets`` the victim is queried once on the largest budget and a fresh surrogate is
trained per budget (:func:`~fedsim.extraction.extraction_curve`; the configured ``queries`` is
one of the points, so the round's figures are the curve's point there); the curve goes to
``extraction_curve`` in the metrics line and to ``RUN_DIR/extraction/`` as JSON and PNG. With a
``watermark:`` block the surrogate's trigger accuracy ``extraction_watermark_accuracy`` says
whether the stolen copy inherits the owner's watermark. ``extraction_cost_s`` is the probe's
wall time in the round (queries, surrogate training, scoring).

Every draw is seeded: the pool from (seed, ``EXTRACTION``, 0), the surrogate's initial weights
from (seed, ``EXTRACTION``, round, 1), the queries and training shuffles from (seed,
``EXTRACTION``, round).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.extraction import (
    EXTRACTION_ATTACKS,
    CurvePoint,
    ExtractionAttack,
    Victim,
    accuracy,
    build_surrogate,
    extraction_curve,
    noise_images,
    permuted_pixels,
    predict,
)
from fedsim.federation import Federation
from fedsim.models import MODELS
from fedsim.params import load_flat_params
from fedsim.scenario import ExtractionConfig
from fedsim.seeding import Stream, derive_seed, torch_generator
from fedsim.training import TrainSettings
from fedsim.validation import require_known
from fedsim.watermark import TriggerSet, data_range, run_trigger_set, watermark_accuracy
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.probes.held_out import held_out_split
from server.probes.theft_plots import save_extraction_curve
from server.server_data import ServerData

__all__ = ["ExtractionProbe"]

log = logging.getLogger(__name__)


@PROBES.register("extraction")
class ExtractionProbe(Probe):
    """The scenario's extraction attack on the global model of the chosen rounds.

    Parameters
    ----------
    fed : Federation
        The run's data and model factory (the server's process).
    data : ServerData
        The server's held-out set (FLTrust's root set taken out): the thief's public images
        and the evaluation images.
    out_dir : Path, optional
        The run directory; the curve goes to ``out_dir / "extraction"`` (none without it).
    """

    name = "extraction"
    direction = "model→model"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        config = fed.scenario.extraction
        if config is None:
            raise ValueError("the scenario has no extraction block")
        self.fed = fed
        self.config: ExtractionConfig = config
        self.out_dir = out_dir
        train = config.train
        settings = TrainSettings(
            train.epochs, train.batch_size, train.lr, train.momentum, train.weight_decay
        )
        self.attack: ExtractionAttack = EXTRACTION_ATTACKS.get(config.attack)(
            config.queries, settings, shift=config.shift
        )
        key = "extraction.public_fraction"
        split = held_out_split(data, fed.scenario.seed, config.public_fraction, key)
        self.x_eval, self.y_eval = split.eval_x, split.eval_y
        self.budgets = sorted(set(config.budgets or []) | {config.queries})
        self.pool = self._pool(split.public_x)
        self.trigger: TriggerSet | None = (
            run_trigger_set(fed) if fed.scenario.watermark is not None else None
        )
        surrogate = config.surrogate
        self.surrogate_name = surrogate.name or fed.scenario.model.name
        if surrogate.params is not None:
            self.surrogate_params = dict(surrogate.params)
        else:
            same = surrogate.name is None or surrogate.name == fed.scenario.model.name
            self.surrogate_params = dict(fed.scenario.model.params) if same else {}
        self.last_curve: list[dict[str, float]] = []

    def _pool(self, public: torch.Tensor) -> torch.Tensor:
        """The attacker's query images (see the module docstring)."""
        generator = torch_generator(self.fed.scenario.seed, Stream.EXTRACTION, 0)
        if self.config.data == "permuted":
            return permuted_pixels(public, generator)
        if self.config.data == "noise":
            shape = tuple(self.fed.data.dataset.input_shape)
            return noise_images(self.budgets[-1], shape, "uniform", generator, data_range(self.fed))
        return public

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> ExtractionProbe | None:
        """The probe ``extraction`` asks for (``None`` without that block).

        Raises
        ------
        ScenarioError
            Rounds past the run's end, an unknown surrogate model or settings it refuses, a
            public share leaving no evaluation images, or a budget beyond the pool without
            shifted copies.
        """
        config, scenario = fed.scenario.extraction, fed.scenario
        if config is None:
            return None
        check_rounds("extraction.rounds", config.rounds, scenario.rounds)
        name = config.surrogate.name
        if name is not None:
            require_known("extraction.surrogate.name", name, MODELS.names())
        try:
            probe = cls(fed, data, out_dir)
        except InvalidSettingError as e:
            raise ScenarioError("extraction", config.model_dump(), str(e)) from None
        if config.shift == 0 and probe.budgets[-1] > len(probe.pool):
            raise ScenarioError(
                "extraction.shift",
                0,
                f"at least 1 to draw {probe.budgets[-1]} queries from the attacker's "
                f"{len(probe.pool)} images without repeats (or a budget <= {len(probe.pool)})",
            )
        try:
            probe.new_surrogate(1)
        except (InvalidSettingError, TypeError) as e:
            raise ScenarioError(
                "extraction.surrogate.params", probe.surrogate_params, str(e)
            ) from None
        return probe

    @property
    def threat_model(self) -> str:
        """``query``: the global model's answers only."""
        return "query"

    @property
    def rounds(self) -> list[int]:
        """The rounds attacked (``extraction.rounds``, default the last)."""
        return list(self.config.rounds or [self.fed.scenario.rounds])

    def new_surrogate(self, server_round: int) -> nn.Module:
        """A fresh surrogate with the round's seeded initial weights, on the run's device."""
        dataset = self.fed.data.dataset
        seed = derive_seed(self.fed.scenario.seed, Stream.EXTRACTION, server_round, 1) % 2**31
        model = build_surrogate(
            self.surrogate_name,
            tuple(dataset.input_shape),
            dataset.num_classes,
            seed,
            **self.surrogate_params,
        )
        return model.to(self.fed.device)

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Steal the round's global model; return fidelity, accuracy, cost (and the curve)."""
        started = time.perf_counter()
        victim_model = self.fed.model("extraction")
        load_flat_params(victim_model, view.model)
        config = self.config
        victim = Victim(
            victim_model, answers=config.answers, decimals=config.decimals, budget=self.budgets[-1]
        )
        surrogates: list[nn.Module] = []

        def make() -> nn.Module:
            surrogates.append(self.new_surrogate(view.round))
            return surrogates[-1]

        generator = torch_generator(self.fed.scenario.seed, Stream.EXTRACTION, view.round)
        points = extraction_curve(
            self.attack, victim, make, self.pool, self.budgets, self.x_eval, self.y_eval, generator
        )
        at = self.budgets.index(config.queries)
        victim_accuracy = accuracy(predict(victim_model, self.x_eval), self.y_eval)
        figures: dict[str, Any] = {
            "extraction_fidelity": points[at].fidelity,
            "extraction_accuracy": points[at].accuracy,
            "extraction_victim_accuracy": victim_accuracy,
            "extraction_queries": victim.queries,
        }
        if self.trigger is not None:
            figures["extraction_watermark_accuracy"] = watermark_accuracy(
                surrogates[at], self.trigger
            )
        if len(points) > 1:
            self.last_curve = [p._asdict() for p in points]
            figures["extraction_curve"] = self.last_curve
            self._save_curve(view.round, points, victim_accuracy)
        figures["extraction_cost_s"] = time.perf_counter() - started
        log.info("round %d extraction: %s", view.round, figures)
        return figures

    def _save_curve(
        self, server_round: int, points: list[CurvePoint], victim_accuracy: float
    ) -> None:
        if self.out_dir is None:
            return
        folder = self.out_dir / "extraction"
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config
        stem = folder / f"round{server_round:03d}_curve"
        record = {
            "round": server_round,
            "attack": config.attack,
            "answers": config.answers,
            "data": config.data,
            "victim_accuracy": victim_accuracy,
            "points": [p._asdict() for p in points],
        }
        stem.with_suffix(".json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        title = f"round {server_round}: {config.attack}, {config.answers} answers, {config.data}"
        save_extraction_curve(points, victim_accuracy, stem.with_suffix(".png"), title)

    def summary(self) -> dict[str, Any]:
        """The last curve (when budgets were given), for ``summary.json``."""
        return {"extraction_curve": self.last_curve} if self.last_curve else {}

    def state_dict(self) -> dict[str, Any]:
        """The last curve (the only thing carried across rounds)."""
        return {"last_curve": list(self.last_curve)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the last curve after a resume."""
        self.last_curve = list(state.get("last_curve", []))
