"""Run one scenario end to end: preflight checks, the chosen runtime, the run directory.

:func:`preflight` turns every problem that can be found before the first round (unknown names,
impossible rule settings, a missing GPU) into a :class:`~fedsim.errors.ScenarioError`, so a bad
scenario fails in a second with exit code 2 and nothing written.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError

from clients.app import make_client_app
from fedsim.attacks import NO_ATTACK, Backdoor, TextBackdoor, attack_names
from fedsim.checkpoint import load_checkpoint
from fedsim.claim import claim_run_dir
from fedsim.data import DATASETS, federated_data
from fedsim.data.tasks import task_set
from fedsim.errors import SETTING_ERRORS, InvalidSettingError, ScenarioError
from fedsim.federation import Federation, federation_for
from fedsim.models import MODELS
from fedsim.privacy.local import local_dp_round
from fedsim.progress import ProgressObserver
from fedsim.results import RunRecorder, check_new_run_dir, default_run_dir
from fedsim.run.references import prepare_references
from fedsim.run.runtimes.inline import run_inline
from fedsim.run.runtimes.ray import run_ray
from fedsim.run.runtimes.vectorized import run_vectorized
from fedsim.scenario import Scenario, scenario_to_dict
from fedsim.validation import require_known
from fedsim.vectorized.trial import trial_step
from server.app import make_server_app
from server.parts import ServerParts

__all__ = ["check_same_scenario", "preflight", "run_scenario"]

log = logging.getLogger(__name__)


def preflight(scenario: Scenario) -> None:
    """Check everything about ``scenario`` that can be checked before running it.

    The federation (data, attack, model) is built and the server's parts are built exactly as
    the ServerApp builds them (:meth:`server.parts.ServerParts.build`).

    Raises
    ------
    ScenarioError
        Naming the key path, the value and what is allowed.
    """
    require_known("data.dataset", scenario.data.dataset, DATASETS.names())
    require_known("model.name", scenario.model.name, MODELS.names())
    require_known("attack.name", scenario.attack.name, [NO_ATTACK, *attack_names()])
    if scenario.device == "cuda" and not torch.cuda.is_available():
        raise ScenarioError("device", "cuda", "no CUDA GPU is visible here; use 'auto' or 'cpu'")
    try:
        federated_data(scenario.data, scenario.seed)
    except SETTING_ERRORS as e:
        raise ScenarioError("data", scenario.data.model_dump(), str(e)) from None
    _check_tasks(scenario)
    _check_personalization(scenario)
    try:
        fed = federation_for(scenario)
    except SETTING_ERRORS as e:
        raise ScenarioError("attack.params", scenario.attack.params, str(e)) from None
    _check_text(scenario, fed)
    try:
        _check_backdoor(fed)
    except SETTING_ERRORS as e:
        raise ScenarioError("attack.params", scenario.attack.params, str(e)) from None
    model = _build_model(scenario, fed)
    ServerParts.build(fed)
    _check_local_dp(scenario, fed, model)
    _check_vectorizable(scenario, fed, model)


def _check_tasks(scenario: Scenario) -> None:
    """``data.tasks``: known tasks the dataset supports, on settings that can train them.

    The vectorized runtime and DP-SGD train one loss on one output, and per-head averaging
    over holders (``task_assignment: round_robin``) needs single updates, which secure
    aggregation and central DP do not give the server.
    """
    data = scenario.data
    if data.tasks is None:
        return
    try:
        classes = federated_data(data, scenario.seed).dataset.num_classes
        task_set(data.tasks, data.dataset, classes)
    except SETTING_ERRORS as e:
        raise ScenarioError("data.tasks", data.tasks, str(e)) from None
    if scenario.runtime == "vectorized":
        raise ScenarioError(
            "runtime",
            "vectorized",
            "inline or ray with data.tasks (the vectorized runtime "
            "batches one single-output loss per client, not a sum over task heads)",
        )
    if scenario.privacy.local_dp is not None:
        raise ScenarioError(
            "privacy.local_dp",
            "set",
            "null with data.tasks (DP-SGD is not wired to multi-head losses yet)",
        )
    summed = scenario.defense.secure_aggregation is not None or scenario.privacy.central_dp
    if data.task_assignment == "round_robin" and summed:
        raise ScenarioError(
            "data.task_assignment",
            "round_robin",
            "all under secure aggregation or central DP "
            "(a head is averaged over the clients holding its task, which needs single updates)",
        )


def _check_personalization(scenario: Scenario) -> None:
    """``clients.personalization`` on settings whose clients can keep and train a personal part.

    The vectorized runtime trains every client of a round as one batched step and keeps no
    node state between rounds, so it cannot hold personal heads or models; DP-SGD and
    adversarial training are not wired into the personalized local procedures.
    """
    if scenario.clients.personalization is None:
        return
    method = scenario.clients.personalization.method
    if scenario.runtime == "vectorized":
        raise ScenarioError(
            "runtime",
            "vectorized",
            f"inline or ray with clients.personalization ({method}: "
            "the vectorized runtime keeps no per-client state between rounds, and personal "
            "heads or models live in each client's node state)",
        )
    if scenario.privacy.local_dp is not None:
        raise ScenarioError(
            "privacy.local_dp",
            "set",
            "null with clients.personalization (DP-SGD is not wired "
            "to the personalized local procedures)",
        )
    if scenario.clients.adversarial_training is not None:
        raise ScenarioError(
            "clients.adversarial_training",
            "set",
            "null with clients.personalization (not wired to the personalized local procedures)",
        )


def _build_model(scenario: Scenario, fed: Federation) -> torch.nn.Module:
    """The scenario's model, or a scenario error naming ``model.params``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's zero-element-tensor warning
            model = fed.build_model()
    except SETTING_ERRORS as e:
        reason = " ".join(str(e).split())[:200]
        if not reason.startswith("model "):
            reason = f"model {scenario.model.name!r}: {reason}"
        raise ScenarioError("model.params", scenario.model.params, reason) from None
    if any(p.numel() == 0 for p in model.parameters()):
        raise ScenarioError(
            "model.params", scenario.model.params, "sizes that leave no layer empty"
        )
    return model


_IMAGE_ONLY = {
    "robustness": "evasion attacks and certificates perturb pixels",
    "privacy.inversion": "gradient inversion reconstructs images",
    "extraction": "model extraction queries the model with images",
    "watermark": "WAFFLE's trigger set is images",
    "clients.adversarial_training": "adversarial examples are crafted in pixel space",
}
"""Blocks that work on images only, and why (refused on text datasets)."""


def _check_text(scenario: Scenario, fed: Federation) -> None:
    """Refuse on text (character windows) what only makes sense for images, saying why."""
    if not fed.data.dataset.is_text:
        return
    blocks = {
        "robustness": scenario.robustness,
        "privacy.inversion": scenario.privacy.inversion,
        "extraction": scenario.extraction,
        "watermark": scenario.watermark,
        "clients.adversarial_training": scenario.clients.adversarial_training,
    }
    for path, block in blocks.items():
        if block is not None:
            raise ScenarioError(
                path,
                block.model_dump(),
                f"no {path} on the text dataset {fed.data.dataset.name!r}: {_IMAGE_ONLY[path]}",
            )
    if isinstance(fed.attack, Backdoor):
        raise ScenarioError(
            "attack.name",
            scenario.attack.name,
            "an attack for text: backdoors stamp a pixel trigger on images (text_backdoor, "
            "label_flip, sign_flip, gaussian, scaling and the colluding attacks work on text)",
        )
    audit = scenario.privacy.audit
    if audit is not None and audit.canary == "noise":
        raise ScenarioError(
            "privacy.audit.canary",
            "noise",
            "mislabeled on text: a noise canary is an image of uniform pixels (a mislabeled "
            "canary is a training window with a wrong next character)",
        )


def _check_backdoor(fed: Federation) -> None:
    """A backdoor's target must be a class of the data, and its trigger must fit the inputs."""
    attack = fed.attack
    if isinstance(attack, TextBackdoor):
        if not fed.data.dataset.is_text:
            raise InvalidSettingError(
                f"text_backdoor needs a text dataset (shakespeare), got "
                f"{fed.data.dataset.name!r}; on images use backdoor or dba"
            )
        attack.check_window(int(fed.data.dataset.x_test.shape[1]))
        return
    if not isinstance(attack, Backdoor):
        return
    classes = fed.data.dataset.num_classes
    if not attack.target < classes:
        raise InvalidSettingError(
            f"{attack.name} needs target to be a class in [0, {classes}), got {attack.target}"
        )
    height, width = fed.data.dataset.x_test.shape[-2:]
    attack.trigger_mask(int(height), int(width))


def _check_vectorizable(scenario: Scenario, fed: Federation, model: torch.nn.Module) -> None:
    """The vectorized runtime refuses what it cannot batch, instead of falling back.

    It needs a model whose clients can be stacked and stepped under ``torch.func.vmap``
    (:mod:`fedsim.vectorized.support`); one tiny batched step (DP-SGD's too, under local DP)
    is run here to find out.
    """
    if scenario.runtime != "vectorized":
        return
    x, y = fed.data.dataset.x_test[:2], fed.data.dataset.y_test[:2]
    reason = trial_step(model, x, y, dp=scenario.privacy.local_dp is not None)
    if reason is not None:
        raise ScenarioError(
            "model.name",
            scenario.model.name,
            f"a model the vectorized runtime can train: {reason}; or use runtime: inline",
        )


def _check_local_dp(scenario: Scenario, fed: Federation, model: torch.nn.Module) -> None:
    """Local-DP settings that only the clients' data and the model can check."""
    local = scenario.privacy.local_dp
    if local is None:
        return
    try:
        ModuleValidator.validate(model, strict=True)
    except UnsupportedModuleError as e:
        raise ScenarioError(
            "model.name", scenario.model.name, f"a model Opacus can train with DP-SGD ({e})"
        ) from None
    clients = scenario.clients
    sizes = fed.data.sizes()
    honest = np.ones(len(sizes), dtype=bool)
    honest[sorted(fed.malicious)] = False
    # Both checks depend on the size alone: the first honest client of each size, in id
    # order, fails first exactly when some client does (not a million calls for a million).
    ids = np.flatnonzero(honest)
    _, first = np.unique(sizes[ids], return_index=True)
    for client_id in np.sort(ids[first]).tolist():
        size = int(sizes[client_id])
        if clients.batch_size > size:
            raise ScenarioError(
                "clients.batch_size",
                clients.batch_size,
                f"at most the smallest honest client's {size} examples (client {client_id}): "
                "DP-SGD samples batches of expected size B from N >= B examples",
            )
        try:
            local_dp_round(scenario, size)
        except InvalidSettingError as e:
            raise ScenarioError(
                "privacy.local_dp.target_epsilon", local.target_epsilon, str(e)
            ) from None


FREE_ON_RESUME = frozenset({"runtime", "ray", "vectorized", "checkpoint_every"})
"""Top-level keys a resumed run may change: they do not change the numbers."""


def check_same_scenario(run_dir: str | os.PathLike[str], scenario: Scenario) -> None:
    """Refuse to resume ``run_dir`` with a scenario other than the one it was started with.

    Raises
    ------
    ScenarioError
        ``run_dir`` is not a run directory, or its ``scenario.yaml`` differs outside
        :data:`FREE_ON_RESUME` (the message names the differing key paths).
    """
    saved_path = Path(run_dir) / "scenario.yaml"
    if not saved_path.is_file():
        raise ScenarioError("--resume", str(run_dir), "a run directory written by fedsim run")
    with open(saved_path, encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    current = yaml.safe_load(yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False))
    differing = [
        k for k in _differing_keys(saved, current) if k.split(".")[0] not in FREE_ON_RESUME
    ]
    if differing:
        shown = ", ".join(differing[:5]) + (" ..." if len(differing) > 5 else "")
        raise ScenarioError(
            "--resume",
            str(run_dir),
            f"a run of the same scenario (it differs at: {shown})",
        )


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted key paths where two plain-data trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out += _differing_keys(a.get(key), b.get(key), path)
        return out
    return [] if a == b else [prefix or "(whole scenario)"]


def run_scenario(
    scenario: Scenario,
    out: str | os.PathLike[str] | None = None,
    *,
    show_progress: bool = True,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Run ``scenario``; return the run directory and the summary.

    Parameters
    ----------
    scenario : Scenario
        A validated scenario.
    out : path-like, optional
        The run directory; ``runs/<name>-<timestamp>`` when omitted.
    show_progress : bool
        Show the live progress display and the final table.
    resume : path-like, optional
        An interrupted run's directory: continue it from its last checkpoint (from round 1
        if it has none yet). The scenario must be the one that run was started with.
    overwrite : bool
        Replace the run already in ``out``; without it such a directory is refused (see
        :func:`~fedsim.results.check_new_run_dir`).

    Raises
    ------
    ScenarioError
        A bad scenario or argument; a directory that holds a run (without ``overwrite``); a
        directory another live run owns (:func:`~fedsim.claim.claim_run_dir`), with or
        without ``overwrite`` and ``resume``.
    """
    preflight(scenario)
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise ScenarioError("--out", str(out), "no --out with --resume (it writes RUN_DIR)")
        if overwrite:
            raise ScenarioError("--overwrite", True, "no --overwrite with --resume")
        if not Path(resume).is_dir():
            raise ScenarioError("--resume", str(resume), "a run directory written by fedsim run")
        run_dir, option = Path(resume), "--resume"
    else:
        run_dir = Path(out) if out is not None else default_run_dir(scenario.name)
        option = "--out"
    # Owned from before the first look at the directory to the end of the run: two runs
    # never decide together that it is theirs (see fedsim.claim).
    with claim_run_dir(run_dir, option):
        return _run_in(run_dir, scenario, show_progress, resume is not None, overwrite)


def _run_in(
    run_dir: Path, scenario: Scenario, show_progress: bool, resume: bool, overwrite: bool
) -> tuple[Path, dict[str, Any]]:
    """:func:`run_scenario` in a run directory this process owns."""
    checkpoint = None
    if resume:
        check_same_scenario(run_dir, scenario)
        checkpoint = load_checkpoint(run_dir)
        if checkpoint is None:
            log.warning("%s has no checkpoint yet: running it from round 1", run_dir)
    else:
        check_new_run_dir(run_dir, overwrite)
    history = checkpoint.history if checkpoint is not None else None
    recorder = RunRecorder(run_dir, scenario_to_dict(scenario), history)
    observer = ProgressObserver(recorder, scenario, enabled=show_progress)
    server_app = make_server_app(scenario, observer, checkpoint)
    client_app = make_client_app(scenario)
    try:
        prepare_references(scenario, run_dir)  # membership inference's, cached in run_dir
        with observer:
            if scenario.runtime == "inline":
                run_inline(server_app, client_app, scenario.data.num_clients, scenario.seed)
            elif scenario.runtime == "vectorized":
                run_vectorized(server_app, client_app, scenario)
            else:
                run_ray(server_app, client_app, scenario)
    finally:
        recorder.close()
    if observer.summary is None:
        raise RuntimeError("the server finished without a summary")
    return run_dir, observer.summary
