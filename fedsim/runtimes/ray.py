"""The ``ray`` runtime: Flower's simulation engine on Ray, one SuperNode per client.

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

from fedsim.config import Scenario

__all__ = ["backend_config", "run_ray"]


def backend_config(scenario: Scenario) -> dict[str, Any]:
    """Flower's ``backend_config`` for ``scenario`` on this machine (or its Ray cluster)."""
    import torch

    ray_cfg = scenario.ray
    use_gpu = scenario.device != "cpu" and torch.cuda.is_available()
    if ray_cfg.client_gpus is not None:
        gpus = ray_cfg.client_gpus if use_gpu else 0.0
    else:
        # Share one GPU among up to (CPUs / client_cpus) concurrent clients.
        slots = max(1, int((os.cpu_count() or 1) // ray_cfg.client_cpus))
        gpus = round(1.0 / min(slots, scenario.clients_per_round), 4) if use_gpu else 0.0
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
    """Run the apps on Flower's Ray simulation engine."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    from flwr.simulation import run_simulation

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=scenario.data.num_clients,
        backend_config=backend_config(scenario),
    )
