"""Reference federations for membership inference, trained by fedsim before the run.

LiRA and RMIA compare the target model with reference models trained on data where each
audited example is in or out at random (Carlini et al., IEEE S&P 2022). In FL the reference of
a federation is a federation: reference r runs the *same scenario* — clients, partition,
attack, defence, DP — with probes left out, on shadow data (:func:`fedsim.data.shadow.shadow_data`):
member targets whose bit is off are taken out of their clients' partitions, non-member targets
whose bit is on are added to their home clients. Its seed is derived from the scenario's
(seed, ``Stream.MEMBERSHIP``, 4, r), so its initial weights, sampling, shuffling and DP noise
are its own (sharing the target's noise would make DP look weaker than it is).

They run on one deterministic in-process runtime whatever the main run's runtime is:
``vectorized`` when the model can be batched, else ``inline`` (on the GPU when ``device``
resolves to one), so ``inline``, ``ray`` and ``vectorized`` main runs audit against the same
references. The global model after each round the probe needs is recorded through the
ServerApp's ``on_model`` observer hook, and all of them are cached in
``RUN_DIR/membership/references.pt`` (:mod:`fedsim.reference_models`) with the seconds they
took; a resumed run finds them and does not train them again.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clients.app import make_client_app
from fedsim.data.shadow import shadow_data
from fedsim.federation import (
    Federation,
    build_scenario_attack,
    federation_for,
    federation_override,
    malicious_clients,
)
from fedsim.reference_models import (
    ReferenceModels,
    load_references,
    reference_fingerprint,
    save_references,
)
from fedsim.run.runtimes.inline import run_inline
from fedsim.run.runtimes.vectorized import run_vectorized
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, derive_seed
from fedsim.vectorized.trial import trial_step
from server.app import make_server_app
from server.parts import ServerParts
from server.probes import PROBES
from server.probes.membership import MembershipProbe

__all__ = ["prepare_references", "reference_runtime", "reference_scenario"]

log = logging.getLogger(__name__)


class _ModelRecorder:
    """A round observer that keeps the global weights of the rounds asked for."""

    run_dir = None  # no artefacts, no checkpoints

    def __init__(self, last_round: int) -> None:
        self.last_round = last_round
        self.weights: dict[int, torch.Tensor] = {}

    def on_round(self, record: dict[str, Any]) -> None:
        """Nothing: the references' metrics are not recorded."""

    def on_model(self, server_round: int, weights: torch.Tensor) -> None:
        """Keep ``weights`` (every round up to the last one needed)."""
        if server_round <= self.last_round:
            self.weights[server_round] = weights.detach().to(torch.float32).clone()

    def on_end(self, summary: dict[str, Any]) -> None:
        """Nothing to do."""


def reference_runtime(fed: Federation) -> str:
    """``vectorized`` when the scenario's model can be trained batched, else ``inline``."""
    x, y = fed.data.dataset.x_test[:2], fed.data.dataset.y_test[:2]
    dp = fed.scenario.privacy.local_dp is not None
    return "vectorized" if trial_step(fed.build_model(), x, y, dp=dp) is None else "inline"


def reference_scenario(scenario: Scenario, index: int, rounds: int, runtime: str) -> Scenario:
    """The scenario of reference federation ``index``: no probes, its own seed, ``rounds``."""
    privacy = scenario.privacy.model_copy(
        update={name: None for name in PROBES.names() if hasattr(scenario.privacy, name)}
    )
    seed = derive_seed(scenario.seed, Stream.MEMBERSHIP, 4, index) % 2**31
    return scenario.model_copy(
        update={
            "name": f"{scenario.name}-reference{index}",
            "seed": seed,
            "rounds": rounds,
            "runtime": runtime,
            "privacy": privacy,
            "checkpoint_every": None,
            "sweep": None,
        }
    )


def prepare_references(
    scenario: Scenario, run_dir: str | os.PathLike[str]
) -> ReferenceModels | None:
    """Train (or find cached in ``run_dir``) the reference federations the probe needs.

    Returns ``None`` when the scenario's membership attack uses no references.
    """
    config = scenario.privacy.membership
    if config is None:
        return None
    fed = federation_for(scenario)
    # The probe as the server builds it: its non-members come from the server's held-out set.
    probe = ServerParts.build(fed).probes.find(MembershipProbe.name)
    if not isinstance(probe, MembershipProbe) or not probe.reference_rounds:
        return None
    fingerprint = reference_fingerprint(scenario)
    cached = load_references(run_dir)
    if cached is not None and cached.fingerprint == fingerprint:
        log.info("membership: %d cached reference federations", cached.weights.shape[0])
        return cached
    rounds, targets, in_mask = probe.reference_rounds, probe.targets, probe.in_mask
    k = targets.train_index.size
    runtime = reference_runtime(fed)
    log.info(
        "membership: training %d reference federations (%s, %d rounds each)",
        config.references,
        runtime,
        rounds[-1],
    )
    started = time.perf_counter()
    weights = []
    for index, mask in enumerate(in_mask):
        ref = reference_scenario(scenario, index, rounds[-1], runtime)
        data = shadow_data(
            fed.data, targets.train_index, mask[:k], targets.extra, mask[k:], targets.home[k:]
        )
        ref_fed = Federation(
            scenario=ref,
            data=data,
            malicious=malicious_clients(ref),
            device=fed.device,
            attack=build_scenario_attack(ref, data.dataset.num_classes),
            tasks=fed.tasks,
        )
        recorder = _ModelRecorder(rounds[-1])
        with federation_override(ref_fed):
            server_app = make_server_app(ref, recorder)
            client_app = make_client_app(ref)
            if runtime == "vectorized":
                run_vectorized(server_app, client_app, ref)
            else:
                run_inline(server_app, client_app, ref.data.num_clients, ref.seed)
        weights.append(_at_rounds(recorder.weights, rounds, index))
    refs = ReferenceModels(
        fingerprint=fingerprint,
        rounds=list(rounds),
        weights=torch.stack(weights),
        in_mask=torch.from_numpy(np.asarray(in_mask, dtype=bool)),
        seconds=time.perf_counter() - started,
        runtime=runtime,
    )
    path = save_references(Path(run_dir), refs)
    log.info("membership: references trained in %.1f s, saved to %s", refs.seconds, path)
    return refs


def _at_rounds(recorded: dict[int, torch.Tensor], rounds: list[int], index: int) -> torch.Tensor:
    """``(len(rounds), d)``: each round's model, or the last one finished before it.

    A reference stopped by its DP budget has no models for the rounds after that.
    """
    out = []
    for r in rounds:
        done = [t for t in recorded if t <= r]
        if not done:
            raise RuntimeError(f"reference federation {index} finished no round by round {r}")
        out.append(recorded[max(done)])
    return torch.stack(out)
