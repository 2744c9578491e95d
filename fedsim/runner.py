"""Run one scenario end to end: preflight checks, the chosen runtime, the run directory.

:func:`preflight` turns every problem that can be found before the first round (unknown names,
impossible rule settings, a missing GPU) into a :class:`~fedsim.errors.ScenarioError`, so a bad
scenario fails in a second with exit code 2 and nothing written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from fedsim.config import Scenario, scenario_to_dict
from fedsim.data import DATASETS, federated_data
from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.federation import federation_for
from fedsim.models import MODELS
from fedsim.progress import ProgressObserver
from fedsim.results import RunRecorder, default_run_dir

__all__ = ["preflight", "run_scenario"]

log = logging.getLogger(__name__)


def preflight(scenario: Scenario) -> None:
    """Check everything about ``scenario`` that can be checked before running it.

    Raises
    ------
    ScenarioError
        Naming the key path, the value and what is allowed.
    """
    from fedsim.attacks import NO_ATTACK, attack_names
    from server import aggregators
    from server.adversary.base import ColludingAttack
    from server.app import build_aggregator, default_f, fltrust_rule

    _check_name("data.dataset", scenario.data.dataset, DATASETS.names())
    _check_name("model.name", scenario.model.name, MODELS.names())
    _check_name("defense.aggregator", scenario.defense.aggregator, aggregators.names())
    _check_name("attack.name", scenario.attack.name, [NO_ATTACK, *attack_names()])
    if scenario.device == "cuda" and not torch.cuda.is_available():
        raise ScenarioError("device", "cuda", "no CUDA GPU is visible here; use 'auto' or 'cpu'")
    for index, item in enumerate(scenario.defense.pre):
        name = item if isinstance(item, str) else item.get("name")
        _check_name(f"defense.pre.{index}", name, aggregators.pre_names())
    try:
        rule = build_aggregator(scenario)
        rule.check_round(scenario.clients_per_round)
    except InvalidSettingError as e:
        key = "defense.pre" if scenario.defense.pre else "defense.params"
        value = scenario.defense.pre if scenario.defense.pre else scenario.defense.params
        raise ScenarioError(key, value, str(e)) from None
    try:
        data = federated_data(scenario.data, scenario.seed)
    except InvalidSettingError as e:
        raise ScenarioError("data", scenario.data.model_dump(), str(e)) from None
    fltrust = fltrust_rule(rule)
    if fltrust is not None and not fltrust.root_size < len(data.dataset.y_test):
        raise ScenarioError(
            "defense.params.root_size",
            fltrust.root_size,
            f"fewer than the {len(data.dataset.y_test)} held-out samples it is drawn from",
        )
    try:
        fed = federation_for(scenario)
        if isinstance(fed.attack, ColludingAttack):
            fed.attack.check_round(scenario.clients_per_round, max(1, default_f(scenario)))
    except InvalidSettingError as e:
        raise ScenarioError("attack.params", scenario.attack.params, str(e)) from None
    try:
        fed.build_model()
    except InvalidSettingError as e:
        raise ScenarioError("model.params", scenario.model.params, str(e)) from None


def _check_name(path: str, value: str, known: list[str]) -> None:
    if value not in known:
        raise ScenarioError(path, value, f"one of: {', '.join(known)}")


def run_scenario(
    scenario: Scenario, out: str | os.PathLike[str] | None = None, *, show_progress: bool = True
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
    """
    from clients.app import make_client_app
    from server.app import make_server_app

    preflight(scenario)
    run_dir = Path(out) if out is not None else default_run_dir(scenario.name)
    recorder = RunRecorder(run_dir, scenario_to_dict(scenario))
    observer = ProgressObserver(recorder, scenario, enabled=show_progress)
    server_app = make_server_app(scenario, observer)
    client_app = make_client_app(scenario)
    try:
        with observer:
            if scenario.runtime == "inline":
                from fedsim.runtimes.inline import run_inline

                run_inline(server_app, client_app, scenario.data.num_clients, scenario.seed)
            else:
                from fedsim.runtimes.ray import run_ray

                run_ray(server_app, client_app, scenario)
    finally:
        recorder.close()
    if observer.summary is None:
        raise RuntimeError("the server finished without a summary")
    return run_dir, observer.summary
