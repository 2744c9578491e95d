"""The ``ray`` runtime: clients on Ray actors, the ServerApp in this process.

Two engines (``ray.engine``): ``fedsim`` (default), a pool of long-lived actors answering each
round's messages in one call per actor (:mod:`fedsim.run.runtimes.ray_pool`), and ``flower``,
Flower's simulation engine (one SuperNode per client, one Ray call per message).

Client resources are derived from the machine: ``ray.client_cpus`` CPUs per client and, when
a GPU is visible and the device is not ``cpu``, a fractional GPU share so several clients
train on it at once.

Which Ray (:func:`ray_target`): ``ray.address`` when set (``local``: always a fresh local
instance), else ``RAY_ADDRESS``, else the address file a ``ray start`` leaves
(``/tmp/ray/ray_current_cluster``), else a fresh local instance sized to this machine. A
failure to attach (:func:`init_ray`) is a :class:`~fedsim.errors.RunError` that names the
address, where it came from, and how to start a fresh local instance instead.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedsim.errors import RunError
from fedsim.run.runtimes.inline import run_on_grid
from fedsim.run.runtimes.ray_pool import RayPoolGrid, pool_size
from fedsim.scenario import Scenario, scenario_to_dict

__all__ = ["RayTarget", "backend_config", "init_ray", "ray_target", "run_ray"]

LOCAL = "local"
"""``ray.address`` (and Ray's) word for: start a fresh local instance, whatever else is set."""


@dataclass(frozen=True)
class RayTarget:
    """The Ray cluster a run attaches to (``address``), or ``None`` for a fresh local one.

    ``source`` says where the address came from, for messages.
    """

    address: str | None
    source: str

    def fresh_local_hint(self) -> str:
        """How to run on a fresh local Ray instance instead of ``address``."""
        if self.source == "RAY_ADDRESS":
            how = "unset RAY_ADDRESS (or set ray.address: local)"
        elif self.source.startswith("Ray's address file"):
            how = "run `ray stop` if that cluster is gone (or set ray.address: local)"
        else:
            how = f"drop {self.source} (or give it as `local`)"
        return f"to start a fresh local Ray instance instead, {how}"


def ray_target(address: str | None, setting: str = "ray.address") -> RayTarget:
    """Where a run's Ray comes from: ``address``, ``RAY_ADDRESS``, Ray's address file, or none.

    Parameters
    ----------
    address : str, optional
        The configured address (``ray.address``, or ``--ray-address`` for a sweep);
        ``"local"`` asks for a fresh local instance whatever the environment says.
    setting : str
        The name of that setting, for messages.
    """
    if address == LOCAL:
        return RayTarget(None, setting)
    if address:
        return RayTarget(address, setting)
    if env := os.environ.get("RAY_ADDRESS", "").strip():
        return RayTarget(None if env == LOCAL else env, "RAY_ADDRESS")
    from ray._private.utils import get_ray_address_file, read_ray_address

    if found := read_ray_address():
        return RayTarget(found, f"Ray's address file {get_ray_address_file(None)} (`ray start`)")
    return RayTarget(None, "default")


def init_ray(init_args: dict[str, Any], target: RayTarget) -> None:
    """``ray.init`` for ``target``: attach to its cluster, or start a fresh local instance.

    ``init_args`` may size a local instance (``num_cpus``, ``num_gpus``); those are dropped
    when attaching, as Ray requires.

    Raises
    ------
    RunError
        Ray could not be started or attached to; the message names the address, its source
        and how to start a fresh local instance instead.
    """
    import ray

    args = dict(init_args)
    if target.address is not None:
        args = {k: v for k, v in args.items() if k not in ("num_cpus", "num_gpus")}
        args["address"] = target.address
    else:
        args["address"] = LOCAL  # never Ray's own look-up: RAY_ADDRESS or a stale file
    try:
        if target.address is not None:
            _check_reachable(target.address)  # Ray itself retries a dead address for minutes
        ray.init(**args)
    except Exception as e:  # noqa: BLE001  (Ray raises ConnectionError, ValueError, RuntimeError...)
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        if target.address is None:
            raise RunError(f"could not start a local Ray instance ({reason})") from e
        raise RunError(
            f"could not connect to the Ray cluster at {target.address} (from "
            f"{target.source}): {reason}; {target.fresh_local_hint()}"
        ) from e


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Raise ``ConnectionError`` unless ``host:port`` accepts a TCP connection.

    Other forms (``auto``, ``ray://...``) are left to Ray.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in host or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConnectionError(f"nothing answers at {address} ({e.strerror or e})") from None


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
    target = ray_target(ray_cfg.address)
    if target.address is not None:
        init_args["address"] = target.address
    else:
        init_args["address"] = LOCAL
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
        import ray
        from flwr.simulation import run_simulation

        # Started here, so that a failure to attach is our one clear message, not Flower's.
        started_here = not ray.is_initialized()
        if started_here:
            init_ray(config["init_args"], ray_target(scenario.ray.address))
        try:
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=scenario.data.num_clients,
                backend_config=config,
            )
        finally:
            if started_here and ray.is_initialized():
                ray.shutdown()
        return
    _run_pool(server_app, client_app, scenario, config)


def _run_pool(
    server_app: ServerApp, client_app: ClientApp, scenario: Scenario, config: dict[str, Any]
) -> None:
    """Run fedsim's engine: the ServerApp in this process, clients in a pool of Ray actors."""
    import ray  # imported when a run uses it: Ray takes a second to import

    started_here = not ray.is_initialized()
    if started_here:
        init_ray(config["init_args"], ray_target(scenario.ray.address))
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
