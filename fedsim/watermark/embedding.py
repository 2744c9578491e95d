r"""WAFFLE in a run: one secret trigger set per run, embedded into every round's aggregate.

The server owns the watermark. :func:`run_trigger_set` draws the run's trigger set once, from
the generator (seed, ``WATERMARK``); :class:`WaffleEmbedding` retrains the aggregate
:math:`\theta_t` of round :math:`t` on it,

.. math:: \theta_t' = \mathrm{embed}\big(\theta_t;\ T,\ g_t\big), \qquad
          g_t = \mathrm{Generator}(\text{seed}, \texttt{WATERMARK}, t),

where :math:`T` is the trigger set and :func:`~fedsim.watermark.waffle.embed` is WAFFLE's
retraining (its SGD shuffles drawn from :math:`g_t`, a fresh optimizer per round). So
:math:`\theta_t'` is a pure function of the aggregate, the scenario and the round: nothing to
checkpoint, and a resumed run embeds exactly as the uninterrupted one. The server applies it
to the rule's new weights (``ServerParts.after_aggregate``: embedding trains, so it is a
server part, not a probe); the watermark probe (:mod:`server.probes.watermark`) and the
extraction probe rebuild the same trigger set to measure it.

Plain torch on flat weight vectors: no Flower, no server.

References
----------
Tekgul, Xia, Marchal, Asokan. WAFFLE: Watermarking in Federated Learning. SRDS 2021.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.federation import Federation
from fedsim.params import flat_params, load_flat_params
from fedsim.seeding import Stream, torch_generator
from fedsim.watermark.trigger import TriggerSet, trigger_set
from fedsim.watermark.waffle import WaffleSettings, embed

__all__ = ["WaffleEmbedding", "data_range", "run_trigger_set"]

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


class WaffleEmbedding:
    r"""WAFFLE retraining of each round's aggregate on the run's trigger set.

    Parameters
    ----------
    model : nn.Module
        A working model of the run's architecture; each call loads the aggregate into it.
    trigger : TriggerSet
        The run's trigger set (:func:`run_trigger_set`).
    settings : WaffleSettings
        Threshold, step budget and SGD of the retraining.
    seed : int
        The scenario seed; round :math:`t` shuffles with (seed, ``WATERMARK``, :math:`t`).

    Attributes
    ----------
    last_steps : int
        SGD steps the last call took (0 when the aggregate already carried the watermark).

    Examples
    --------
    >>> trigger = TriggerSet(torch.eye(4), torch.tensor([0, 1, 2, 0]))
    >>> settings = WaffleSettings(threshold=1.0, max_steps=500, lr=0.5)
    >>> embedding = WaffleEmbedding(nn.Linear(4, 3), trigger, settings, seed=0)
    >>> marked = embedding(torch.zeros(15, dtype=torch.float64), server_round=1)
    >>> marked.dtype, embedding.last_steps > 0
    (torch.float64, True)
    >>> torch.equal(embedding(torch.zeros(15, dtype=torch.float64), server_round=1), marked)
    True

    References
    ----------
    Tekgul, Xia, Marchal, Asokan. WAFFLE: Watermarking in Federated Learning. SRDS 2021.
    """

    def __init__(
        self, model: nn.Module, trigger: TriggerSet, settings: WaffleSettings, seed: int
    ) -> None:
        self.model = model
        self.trigger = trigger
        self.settings = settings
        self.seed = seed
        self.last_steps = 0

    @classmethod
    def from_scenario(cls, fed: Federation) -> WaffleEmbedding | None:
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
            settings = WaffleSettings(
                threshold=config.threshold,
                max_steps=config.max_steps,
                batch_size=config.batch_size,
                lr=config.lr,
                momentum=config.momentum,
            )
            trigger = run_trigger_set(fed)
        except InvalidSettingError as e:
            raise ScenarioError("watermark", config.model_dump(), str(e)) from None
        return cls(fed.model("watermark"), trigger, settings, fed.scenario.seed)

    def __call__(self, weights: torch.Tensor, server_round: int) -> torch.Tensor:
        """The aggregate ``weights`` retrained until watermarked (same dtype, CPU)."""
        load_flat_params(self.model, weights)
        generator = torch_generator(self.seed, Stream.WATERMARK, server_round)
        started = time.perf_counter()
        self.last_steps = embed(
            self.model, self.trigger.x, self.trigger.y, self.settings, generator
        )
        log.info(
            "round %d: WAFFLE embedding took %d steps (%.2f s)",
            server_round,
            self.last_steps,
            time.perf_counter() - started,
        )
        return flat_params(self.model).to(weights.dtype)
