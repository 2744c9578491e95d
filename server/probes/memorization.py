r"""The memorisation probe (model → data): how much a text model memorised secrets clients typed.

``privacy.memorization`` inserts canaries (``"my secret number is 281764"``) into honest
clients' text, each ``r`` times (:mod:`fedsim.memorization.canaries`; the federation does this
before training). In the probe's rounds (default: the last) it scores the global model:

- ``canary_exposure``: repeat count (as a string, ``"1"``, ``"10"``, ...) → mean exposure in
  bits of the canaries inserted that often, :math:`\log_2|R| - \log_2 \mathrm{rank}` among
  all :math:`|R| = 10^{digits}` candidate secrets, exact by enumeration or by the skew-normal
  fit (Carlini et al., "The Secret Sharer", USENIX Security 2019;
  :mod:`fedsim.memorization.exposure`);
- ``canary_extracted``: the share of canaries whose secret a beam search from the prefix
  returns verbatim (:func:`fedsim.memorization.beam_search`);
- ``canary_extracted_by_repeats``: repeat count → the share of the canaries inserted that often
  that are extracted;
- ``memorization_s``: the probe's seconds.

``summary.json`` gets ``final_canary_exposure`` and ``final_canary_extracted_by_repeats`` (the
last measured mappings) besides the scalar ``final_canary_extracted``. Threat model
``global_model``: the attacker queries the deployed model's next-character probabilities,
knowing the prefix and the secret's format.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from fedsim.errors import ScenarioError
from fedsim.federation import Federation
from fedsim.memorization import MemorizationTest, mean_by_repeats
from fedsim.params import load_flat_params
from fedsim.seeding import Stream, numpy_rng
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.server_data import ServerData

__all__ = ["MemorizationProbe"]


@PROBES.register("memorization")
class MemorizationProbe(Probe):
    """Exposure and extraction of ``privacy.memorization``'s canaries on the global model.

    Parameters
    ----------
    fed : Federation
        The run's model factory and its canaries (``fed.text_canaries``).
    data : ServerData
        Unused (the candidates are the probe's own).
    out_dir : Path, optional
        Unused.
    """

    name = "memorization"
    direction = "model→data"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        config = fed.scenario.privacy.memorization
        if config is None or fed.text_canaries is None:
            raise ValueError("the memorization probe needs privacy.memorization and its canaries")
        self.fed, self.config, self.canaries = fed, config, fed.text_canaries
        self.test = MemorizationTest(config.digits, config.exact_limit, config.samples, config.beam)
        self.last: dict[str, Any] = {}

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> MemorizationProbe | None:
        """The probe of ``privacy.memorization`` (None without it).

        Raises
        ------
        ScenarioError
            The dataset is not text, the rounds go past the run, or every client is malicious.
        """
        config = fed.scenario.privacy.memorization
        if config is None:
            return None
        if not fed.data.dataset.is_text:
            raise ScenarioError(
                "privacy.memorization",
                config.model_dump(),
                f"a text dataset (data.dataset: shakespeare), not {fed.data.dataset.name!r}: "
                "canaries are secrets typed into a language model's training text",
            )
        check_rounds("privacy.memorization.rounds", config.rounds, fed.scenario.rounds)
        if fed.text_canaries is None:
            raise ScenarioError(
                "privacy.memorization", config.model_dump(), "an honest client to own canaries"
            )
        return cls(fed, data, out_dir)

    @property
    def threat_model(self) -> str:
        """``global_model``: next-character probabilities of the deployed model."""
        return "global_model"

    @property
    def rounds(self) -> list[int]:
        """``privacy.memorization.rounds``, or the run's last round."""
        return self.config.rounds or [self.fed.scenario.rounds]

    def observe(self, view: RoundView) -> dict[str, Any]:
        """``canary_exposure``, ``canary_extracted`` (all, by repeats), ``memorization_s``."""
        start = time.perf_counter()
        model = self.fed.model("memorization")
        load_flat_params(model, view.model)
        model.eval()
        device = next(model.parameters()).device

        def logits(windows: torch.Tensor) -> torch.Tensor:
            return model(windows.to(device)).cpu()

        rng = numpy_rng(self.fed.scenario.seed, Stream.MEMORIZATION, 2, view.round)
        result = self.test(logits, self.canaries, rng)
        self.last = {
            "canary_exposure": mean_by_repeats(result.exposures, self.canaries.repeats),
            "canary_extracted": sum(result.extracted) / len(result.extracted),
            "canary_extracted_by_repeats": mean_by_repeats(
                [float(e) for e in result.extracted], self.canaries.repeats
            ),
        }
        return {**self.last, "memorization_s": time.perf_counter() - start}

    def summary(self) -> dict[str, Any]:
        """The last measured mappings, keyed by repeat count.

        ``final_canary_exposure`` (mean bits) and ``final_canary_extracted_by_repeats`` (share
        extracted).
        """
        if not self.last:
            return {}
        return {
            f"final_{key}": dict(self.last[key])
            for key in ("canary_exposure", "canary_extracted_by_repeats")
            if key in self.last
        }

    def state_dict(self) -> dict[str, Any]:
        """The last measured figures (for the summary after a resume)."""
        return {"last": self.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        self.last = dict(state.get("last", {}))
