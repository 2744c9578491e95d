"""Randomized-smoothing certification of the global model, run by the robustness probe.

``robustness.certify`` makes the robustness probe (:mod:`server.probes.robustness`) run CERTIFY
(Cohen et al., ICML 2019; :class:`fedsim.certify.RandomizedSmoothing`) in its rounds on a seeded
subset of the server's held-out set. It is part of that probe rather than a probe of its own:
same threat model (``global_model``, white-box), same direction (data→model), same rounds,
global model and held-out set, and its file goes to ``RUN_DIR/robustness/``.

What is certified: the *smoothed* classifier g of the global model f (``denoiser: none``; the
purifier is not part of it) is constant on the ℓ2 ball (pixel space) of the reported radius
around each certified sample, with probability at least 1 − α over the noise draws. With
``denoiser: diffusion`` the base classifier is f∘D, D the diffusion model's one-shot denoiser
at the smoothing σ (denoised smoothing, Carlini et al., ICLR 2023;
:meth:`fedsim.purification.DiffusionPurifier.denoise`): D is deterministic, so the certificate
is Cohen et al.'s for the classifier f∘D, with the same guarantee. The robustness probe trains
D on the server's public pool before the first certified round.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedsim.certify import RandomizedSmoothing, certified_accuracy
from fedsim.errors import InvalidSettingError
from fedsim.purification import DiffusionPurifier
from fedsim.results import write_json_atomic
from fedsim.scenario.robustness import CertifyConfig
from fedsim.seeding import Stream, torch_generator

__all__ = ["Certification"]


class Certification:
    """CERTIFY on a fixed subset in each evaluated round: records, certified accuracy, seconds.

    Parameters
    ----------
    config : CertifyConfig
        ``robustness.certify``.
    x, y : Tensor
        The subset, [0, 1] pixels, and its labels.
    seed : int
        The scenario's seed (noise draws: ``Stream.ROBUSTNESS``, round, 4).
    diffusion : DiffusionPurifier, optional
        With ``denoiser: diffusion``: the model whose :meth:`~DiffusionPurifier.denoise` at σ
        denoises each noisy copy (trained by the time this object is called).
    """

    def __init__(
        self,
        config: CertifyConfig,
        x: torch.Tensor,
        y: torch.Tensor,
        seed: int,
        diffusion: DiffusionPurifier | None = None,
    ) -> None:
        self.config, self.x, self.y, self.seed = config, x, y, seed
        if (config.denoiser == "diffusion") != (diffusion is not None):
            raise InvalidSettingError(
                f"robustness.certify.denoiser is {config.denoiser!r}: a diffusion model goes "
                "with denoiser: diffusion, and only with it"
            )
        self.smoothing = RandomizedSmoothing(
            sigma=config.sigma,
            n0=config.n0,
            n=config.n,
            alpha=config.alpha,
            batch_size=config.batch_size,
            denoiser=None if diffusion is None else partial(diffusion.denoise, sigma=config.sigma),
        )

    def __call__(
        self, pixel_model: nn.Module, server_round: int, out_dir: Path | None
    ) -> dict[str, Any]:
        """``certified_accuracy`` (``r<radius>`` → share) and ``certify_s`` for this round.

        Writes ``out_dir / "robustness" / f"certify_round{server_round}.json"`` (a list of
        ``{label, prediction, count, n, radius}``) when ``out_dir`` is given.
        """
        start = time.perf_counter()
        device = next(pixel_model.parameters()).device
        generator = torch_generator(self.seed, Stream.ROBUSTNESS, server_round, 4)
        records = self.smoothing.certify(
            pixel_model, self.x.to(device), self.y.to(device), generator
        )
        figures: dict[str, Any] = {
            "certified_accuracy": certified_accuracy(records, self.config.radii),
        }
        if out_dir is not None:
            folder = out_dir / "robustness"
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                folder / f"certify_round{server_round}.json", [r.to_dict() for r in records]
            )
        figures["certify_s"] = time.perf_counter() - start
        return figures
