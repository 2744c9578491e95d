"""The class-inference probe (model → data): what a member draws of a class it does not hold.

Configured by ``privacy.class_inference`` (Hitaj, Ateniese, Perez-Cruz, CCS 2017; the math in
:mod:`fedsim.inference.gan`). The attacker is one of the federation's clients
(:attr:`Federation.class_inference <fedsim.federation.Federation>`), its partition stripped of
the target class :math:`c`; it sees every global model (threat model ``global_model``). In
each round it names, the probe does what that client does with the global model it downloads
next (the model after the round): it trains the generator against it, draws ``images``
fakes, and scores them

- ``class_inference_confidence``: the global model's mean softmax probability of :math:`c` on
  the fakes (what the attacker optimised; high even for patterns that merely fool it);
- ``class_inference_fidelity``: the share of fakes an independent judge — an RBF SVM on
  pixels trained on half of the server's held-out set, never on the attacker's data
  (:class:`~fedsim.inference.judge.ReferenceJudge`) — assigns to :math:`c`: whether the fakes
  are recognisable images of the class;
- ``class_inference_s``: the probe's seconds in the round (generator, scoring, file).

In ``active`` mode the attacking client itself trains on the same fakes (same model, same
seed: the probe's images after round r are the attacker's poison in round r + 1, labelled
``fake_label``). The images go to ``RUN_DIR/class_inference/round<r>.npz`` (``images``: float
``(k, C, H, W)`` in pixel space [0, 1], ``target``: :math:`c`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.evasion.pixel_space import model_in_pixel_space, to_pixel_space
from fedsim.federation import Federation
from fedsim.inference import ReferenceJudge
from fedsim.params import all_finite, load_flat_params
from fedsim.seeding import Stream, torch_generator
from fedsim.training import single_thread
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.server_data import ServerData

__all__ = ["ClassInferenceProbe"]

log = logging.getLogger(__name__)

JUDGE_MAX_TRAIN = 2000
"""At most this many held-out images train the judge (an SVM's cost grows as n²)."""


@PROBES.register("class_inference")
class ClassInferenceProbe(Probe):
    """The GAN attack of ``privacy.class_inference``, scored in the rounds it names.

    Parameters
    ----------
    fed : Federation
        The run's federation; its ``class_inference`` is the attacker.
    data : ServerData
        The server's held-out set; half of it (seeded) trains the judge, the other half
        measures the judge's accuracy.
    out_dir : Path, optional
        The run directory (no files without it).
    """

    name = "class_inference"
    direction = "model→data"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        config, attacker = fed.scenario.privacy.class_inference, fed.class_inference
        if config is None or attacker is None:
            raise ValueError("the scenario has no privacy.class_inference block")
        self.fed, self.config, self.attacker, self.out_dir = fed, config, attacker, out_dir
        self.held_out = data.held_out
        self._judge: ReferenceJudge | None = None
        self.judge_accuracy = float("nan")

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> ClassInferenceProbe | None:
        """The probe ``privacy.class_inference`` asks for (``None`` without that block).

        Raises
        ------
        ScenarioError
            Rounds past the run's end (the other settings are checked with the federation).
        """
        config = fed.scenario.privacy.class_inference
        if config is None:
            return None
        check_rounds("privacy.class_inference.rounds", config.rounds, fed.scenario.rounds)
        return cls(fed, data, out_dir)

    @property
    def threat_model(self) -> str:
        """``global_model``: a member of the federation sees every global model."""
        return "global_model"

    @property
    def rounds(self) -> list[int]:
        """The rounds probed (``privacy.class_inference.rounds``, default the last)."""
        return list(self.config.rounds or [self.fed.scenario.rounds])

    def judge(self) -> ReferenceJudge:
        """The independent judge, trained on a seeded half of the held-out set when first used."""
        if self._judge is None:
            dataset = self.fed.data.dataset
            x, y = self.held_out
            pixels = to_pixel_space(x, dataset.mean, dataset.std)
            draws = torch_generator(self.fed.scenario.seed, Stream.CLASS_INFERENCE, 0)
            order = torch.randperm(len(y), generator=draws)
            half = max(1, len(y) // 2)
            train, test = order[:half][:JUDGE_MAX_TRAIN], order[half:]
            self._judge = ReferenceJudge(pixels[train], y[train])
            if len(test):
                self.judge_accuracy = self._judge.accuracy(pixels[test], y[test])
        return self._judge

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Train the attacker's generator on the round's global model, score and save its images."""
        started = time.perf_counter()
        weights = view.model
        if not all_finite(weights):
            log.warning("round %d: non-finite global model, no class inference", view.round)
            return {}
        gan, dataset = self.attacker.gan, self.fed.data.dataset
        model = self.fed.model("class-inference")
        load_flat_params(model, weights)
        seed = self.attacker.seed(view.round + 1)  # the model the attacker downloads next
        with single_thread(self.fed.device):
            discriminator = model_in_pixel_space(model, dataset.mean, dataset.std)
            generator = gan.fit(discriminator, seed)
            device = next(generator.parameters()).device
            draws = torch.Generator(device=device).manual_seed(seed)
            images = gan.sample(generator, self.config.images, draws)
            confidence = gan.confidence(discriminator, images)
        fidelity = self.judge().fidelity(images, gan.target_class)
        if self.out_dir is not None:
            self.save(view.round, images)
        figures = {
            "class_inference_confidence": confidence,
            "class_inference_fidelity": fidelity,
            "class_inference_s": time.perf_counter() - started,
        }
        log.info("round %d class inference: %s", view.round, figures)
        return figures

    def save(self, server_round: int, images: torch.Tensor) -> Path:
        """Write ``RUN_DIR/class_inference/round<r>.npz`` (``images``, ``target``)."""
        directory = Path(self.out_dir or ".") / "class_inference"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"round{server_round}.npz"
        np.savez(
            path,
            images=images.detach().to("cpu", torch.float32).clamp(0, 1).numpy(),
            target=np.int64(self.attacker.gan.target_class),
        )
        return path

    def summary(self) -> dict[str, Any]:
        """Who attacked, how, and how far the judge's verdicts can be trusted."""
        self.judge()
        return {
            "class_inference_attacker": self.attacker.client_id,
            "class_inference_mode": "active" if self.attacker.active else "passive",
            "class_inference_judge_accuracy": (
                self.judge_accuracy if self.judge_accuracy == self.judge_accuracy else None
            ),
        }
