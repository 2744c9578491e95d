"""The ``ray`` runtime: clients on Ray actors, the ServerApp in this process.

Two engines (``ray.engine``): ``fedsim`` (default), a pool of long-lived actors answering each
round's messages in one call per actor (:mod:`fedsim.run.runtimes.ray_pool`), and ``flower``,
Flower's simulation engine (one SuperNode per client, one Ray call per message).

Client resources are derived from the machine: ``ray.client_cpus`` CPUs per client and, when
a GPU is visible and the device is not ``cpu``, a fractional GPU share so several clients
train on it at once. With ``ray.address`` set, the run attaches to that Ray cluster.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedsim.config import Scenario, scenario_to_dict
from fedsim.run.runtimes.inline import run_on_grid
from fedsim.run.runtimes.ray_pool import RayPoolGrid, pool_size

__all__ = ["backend_config", "run_ray"]


def backend_config(scenario: Scenario) -> dict[str, Any]:
    """Flower's ``backend_config`` for ``scenario`` on this machine (or its Ray cluster)."""
    import torch

    ray_cfg = scenario.ray
    use_gpu = scenario.device != "cpu" and torch.cuda.is_available()
    if ray_cfg.client_gpus is not None:
        gpus = ray_cfg.client_gpus if use_gpu else 0.0
    else:
        # Share one GPU among the clients that run at once (one per client_cpus).
        slots = pool_size(os.cpu_count() or 1, ray_cfg.client_cpus, scenario.clients_per_round)
        gpus = round(1.0 / slots, 4) if use_gpu else 0.0
    init_args: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "configure_logging": True,
    }
    if ray_cfg.address:
        init_args["address"] = ray_cfg.address
    else:
        init_args["num_cpus"] = os.cpu_count() or 1
        if use_gpu:
            init_args["num_gpus"] = torch.cuda.device_count()
    return {
        "client_resources": {"num_cpus": ray_cfg.client_cpus, "num_gpus": gpus},
        "init_args": init_args,
    }


def run_ray(server_app: ServerApp, client_app: ClientApp, scenario: Scenario) -> None:
    """Run the apps on Ray: fedsim's actor pool (``ray.engine: fedsim``) or Flower's engine."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    config = backend_config(scenario)
    if scenario.ray.engine == "flower":
        from flwr.simulation import run_simulation

        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=scenario.data.num_clients,
            backend_config=config,
        )
        return
    _run_pool(server_app, client_app, scenario, config)


def _run_pool(
    server_app: ServerApp, client_app: ClientApp, scenario: Scenario, config: dict[str, Any]
) -> None:
    """Run fedsim's engine: the ServerApp in this process, clients in a pool of Ray actors."""
    import ray  # imported when a run uses it: Ray takes a second to import

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(**config["init_args"])
    try:
        resources = config["client_resources"]
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        actors = pool_size(cpus, resources["num_cpus"], scenario.clients_per_round)
        options = {"num_cpus": resources["num_cpus"], "num_gpus": resources["num_gpus"]}
        grid = RayPoolGrid(
            client_app,
            scenario_to_dict(scenario),
            scenario.data.num_clients,
            scenario.seed,
            actors,
            options,
        )
        run_on_grid(server_app, grid)
    finally:
        if started_here:
            ray.shutdown()
