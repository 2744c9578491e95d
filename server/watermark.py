"""The server's WAFFLE watermark: one trigger set per run, embedded after every aggregation.

The server owns the watermark. :func:`run_trigger_set` draws the run's secret trigger set once
from the generator (seed, ``WATERMARK``); :class:`ServerWatermark` retrains each round's
aggregate on it (:func:`fedsim.watermark.embed`) with a fresh generator (seed, ``WATERMARK``,
round) and a fresh optimizer, so the embedding is a pure function of the aggregate, the scenario
and the round: nothing to checkpoint, and a resumed run embeds exactly as the uninterrupted one.
The watermark probe (:mod:`server.probes.watermark`) and the extraction probe rebuild the same
trigger set from the scenario to measure it.

Embedding trains, so it is a server part (:class:`~server.parts.ServerParts`), not a probe.
"""

from __future__ import annotations

import logging
import time

import torch

from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.federation import Federation
from fedsim.params import flat_params, load_flat_params
from fedsim.seeding import Stream, torch_generator
from fedsim.watermark import TriggerSet, WaffleSettings, embed, trigger_set

__all__ = ["ServerWatermark", "data_range", "run_trigger_set"]

log = logging.getLogger(__name__)


def data_range(fed: Federation) -> tuple[float, float]:
    """``(min, max)`` of the training images: the range triggers and noise queries live in."""
    x = fed.data.dataset.x_train
    return float(x.min()), float(x.max())


def run_trigger_set(fed: Federation) -> TriggerSet:
    """The run's WAFFLEPattern trigger set, drawn from the generator (seed, ``WATERMARK``).

    Raises
    ------
    ValueError
        The scenario has no ``watermark`` block.
    """
    config = fed.scenario.watermark
    if config is None:
        raise ValueError("the scenario has no watermark block")
    dataset = fed.data.dataset
    return trigger_set(
        config.trigger_set,
        tuple(dataset.input_shape),
        dataset.num_classes,
        torch_generator(fed.scenario.seed, Stream.WATERMARK),
        noise=config.noise,
        data_range=data_range(fed),
    )


class ServerWatermark:
    """WAFFLE retraining of the aggregate on the run's trigger set, once per round.

    Parameters
    ----------
    fed : Federation
        The run's data and model factory (the server's process).
    """

    def __init__(self, fed: Federation) -> None:
        config = fed.scenario.watermark
        if config is None:
            raise ValueError("the scenario has no watermark block")
        self.fed = fed
        self.settings = WaffleSettings(
            threshold=config.threshold,
            max_steps=config.max_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            momentum=config.momentum,
        )
        self.trigger = run_trigger_set(fed)
        self.last_steps = 0

    @classmethod
    def from_scenario(cls, fed: Federation) -> ServerWatermark | None:
        """The embedding ``watermark`` asks for (``None`` without it or with ``embed: false``).

        Raises
        ------
        ScenarioError
            Settings WAFFLE refuses (naming ``watermark``).
        """
        config = fed.scenario.watermark
        if config is None or not config.embed:
            return None
        try:
            return cls(fed)
        except InvalidSettingError as e:
            raise ScenarioError("watermark", config.model_dump(), str(e)) from None

    def __call__(self, weights: torch.Tensor, server_round: int) -> torch.Tensor:
        """The aggregate ``weights`` retrained until watermarked (same dtype, CPU)."""
        model = self.fed.model("watermark")
        load_flat_params(model, weights)
        generator = torch_generator(self.fed.scenario.seed, Stream.WATERMARK, server_round)
        started = time.perf_counter()
        self.last_steps = embed(model, self.trigger.x, self.trigger.y, self.settings, generator)
        log.info(
            "round %d: WAFFLE embedding took %d steps (%.2f s)",
            server_round,
            self.last_steps,
            time.perf_counter() - started,
        )
        return flat_params(model).to(weights.dtype)
