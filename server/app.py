"""The Flower ``ServerApp``: handshake, rounds through the strategy, evaluation, recording.

:func:`run_server` is the whole server side of a run on any :class:`flwr.serverapp.Grid`:

1. map node ids to client ids: ask every node for its partition id (``query.identify``), or,
   on an in-process grid that assigned the partitions itself (a
   :class:`~fedsim.protocol.PartitionDirectory`), ask the grid;
2. build the server's parts (:class:`~server.parts.ServerParts`: rule, adversary stage,
   central DP, probes) and the :class:`~server.strategy.FedsimStrategy`;
3. run ``strategy.start`` for ``rounds`` rounds; after each round evaluate the global model on
   the server's held-out set (FLTrust's root set taken out) and hand the round's record, with
   the probes' figures (a backdoor's ASR among them), to the observer (which writes
   ``metrics.jsonl`` and updates the progress display).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedsim.checkpoint import Checkpoint, save_checkpoint
from fedsim.claim import claim_run_dir
from fedsim.errors import RunError, ScenarioError
from fedsim.federation import Federation, federation_for
from fedsim.params import load_flat_params
from fedsim.progress import ProgressObserver
from fedsim.protocol import (
    IDENTIFY,
    METRICS,
    PARTITION_ID,
    WEIGHTS_KEY,
    PartitionDirectory,
    from_array_record,
    to_array_record,
)
from fedsim.results import RunRecorder, check_new_run_dir, default_run_dir
from fedsim.scenario import Scenario, load_scenario, scenario_path, scenario_to_dict
from fedsim.training import evaluate, evaluate_tasks
from server.client_nodes import ClientNodes
from server.parts import ServerParts
from server.privacy import BudgetExhausted
from server.strategy import FedsimStrategy

__all__ = [
    "RoundObserver",
    "app",
    "federation_size_message",
    "flwr_run_dir",
    "identify_clients",
    "make_server_app",
    "run_server",
]

log = logging.getLogger(__name__)


class RoundObserver(Protocol):
    """Receives each finished round's record and the run's summary."""

    def on_round(self, record: dict[str, Any]) -> None:
        """Called once per round, as soon as the round is evaluated."""

    def on_end(self, summary: dict[str, Any]) -> None:
        """Called once after the last round."""


# An observer may also have a ``run_dir`` attribute: artefacts (inversion grids) go there; and
# an ``on_model(round, weights)`` method: it gets each finished round's global weights (how
# membership inference's reference federations record their models).


def identify_clients(
    grid: Grid, num_clients: int, timeout: float = 600.0, settle: float = 3.0
) -> ClientNodes:
    """Map client (partition) ids to Flower node ids.

    A grid that is a :class:`~fedsim.protocol.PartitionDirectory` (the in-process runtimes)
    is asked directly: no message, and no node context, per client. Any other grid (``flwr
    run``, Flower's simulation engine) gets the handshake: every node is asked once.

    Flower's simulation engine starts the ServerApp before it registers the nodes, and then
    registers all of them at once; so this waits (up to ``timeout`` seconds) for the first
    nodes, and once their number has not changed for ``settle`` seconds it must be
    ``num_clients``: a federation of another size fails at once instead of waiting forever
    for SuperNodes that will never come.

    Raises
    ------
    RunError
        The federation does not have exactly one node per client (the message names both
        numbers and how to resize a ``flwr run`` federation), or a node failed to answer.
    """
    if isinstance(grid, PartitionDirectory):
        if grid.num_partitions != num_clients:
            raise RunError(federation_size_message(num_clients, grid.num_partitions))
        return ClientNodes.from_directory(grid)
    deadline = time.monotonic() + timeout
    node_ids = list(grid.get_node_ids())
    changed = time.monotonic()
    while len(node_ids) != num_clients and time.monotonic() < deadline:
        if node_ids and time.monotonic() - changed > settle:
            break
        time.sleep(0.05)
        now = list(grid.get_node_ids())
        if len(now) != len(node_ids):
            node_ids, changed = now, time.monotonic()
    if len(node_ids) != num_clients:
        raise RunError(federation_size_message(num_clients, len(node_ids)))
    messages = [
        Message(RecordDict(), dst_node_id=node, message_type=f"query.{IDENTIFY}")
        for node in node_ids
    ]
    client_to_node: dict[int, int] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            raise RunError(
                f"node {reply.metadata.src_node_id} failed to identify: {reply.error.reason}"
            )
        client_id = int(reply.content[METRICS][PARTITION_ID])
        client_to_node[client_id] = reply.metadata.src_node_id
    missing = sorted(set(range(num_clients)) - set(client_to_node))
    if missing:
        raise RunError(
            f"no node answered for client ids {missing[:10]} "
            f"(got {len(client_to_node)} of {num_clients})"
        )
    return ClientNodes.from_dict(client_to_node)


def federation_size_message(num_clients: int, num_nodes: int) -> str:
    """Why a run stops when the federation's SuperNodes do not match the scenario's clients.

    Examples
    --------
    >>> print(federation_size_message(10, 2))  # doctest: +NORMALIZE_WHITESPACE
    the scenario has data.num_clients = 10 but the federation has 2 SuperNodes; fedsim needs
    one SuperNode per client: run it with flwr run . --federation-config "num-supernodes=10"
    (or make data.num_clients 2)
    """
    return (
        f"the scenario has data.num_clients = {num_clients} but the federation has "
        f"{num_nodes} SuperNodes; fedsim needs one SuperNode per client: run it with "
        f'flwr run . --federation-config "num-supernodes={num_clients}" '
        f"(or make data.num_clients {num_nodes})"
    )


def run_server(
    grid: Grid,
    scenario: Scenario,
    observer: RoundObserver,
    resume: Checkpoint | None = None,
) -> dict[str, Any]:
    """Run the rounds of ``scenario`` on ``grid``; return the summary.

    With ``resume``, start from that checkpoint's state and run the remaining rounds. With
    ``checkpoint_every`` set and an observer that has a ``run_dir``, a checkpoint is written
    there after every ``checkpoint_every``-th round (once its metrics line is on disk).
    """
    fed = federation_for(scenario)
    initial = fed.initial_weights() if resume is None else resume.weights
    client_to_node = identify_clients(grid, scenario.data.num_clients)
    run_dir = getattr(observer, "run_dir", None)
    # Only checkpoints read the mirror; a resumed run needs it to hand the state back.
    mirror = scenario.checkpoint_every is not None or resume is not None
    parts = ServerParts.build(fed, run_dir, mirror_client_states=mirror)
    privacy, probes = parts.privacy, parts.probes
    if (warning := privacy.calibration_warning()) is not None:
        log.warning("%s", warning)
    strategy = FedsimStrategy(scenario, parts, client_to_node, initial.numel())
    history: list[dict[str, Any]] = []
    if resume is not None:
        _restore(resume, strategy, parts)
        history = list(resume.history)
    every = scenario.checkpoint_every
    started = time.perf_counter()

    def evaluate_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0 or strategy.report is None:
            return None
        server_round += strategy.round_offset
        result = _evaluate_global(fed, arrays, parts.data.held_out)
        if (on_model := getattr(observer, "on_model", None)) is not None:
            on_model(server_round, from_array_record(arrays, WEIGHTS_KEY))
        report = strategy.report
        record = {
            "round": server_round,
            **result,
            "time_s": time.perf_counter() - report.started,
            **privacy.metrics(),
            **probes.round_metrics(),
            **report.as_record(),
        }
        history.append(record)
        observer.on_round(record)
        if every is not None and run_dir is not None and server_round % every == 0:
            weights = from_array_record(arrays, WEIGHTS_KEY)
            save_checkpoint(run_dir, _checkpoint(server_round, weights, history, parts))
        return MetricRecord({"accuracy": record["accuracy"], "loss": record["loss"]})

    stopped = None
    try:
        strategy.start(
            grid=grid,
            initial_arrays=to_array_record(WEIGHTS_KEY, initial),
            num_rounds=scenario.rounds - strategy.round_offset,
            timeout=scenario.clients.timeout_s or 3600.0,
            train_config=ConfigRecord(),
            evaluate_fn=evaluate_round,
        )
    except BudgetExhausted as e:
        stopped = str(e)
        log.warning("%s", e)
    summary = _summarise(scenario, history, time.perf_counter() - started)
    if privacy.enabled:
        summary["privacy"] = privacy.describe()
    summary.update(probes.summary())
    if stopped is not None:
        summary["stopped"] = stopped
    observer.on_end(summary)
    return summary


def _checkpoint(
    server_round: int, weights: torch.Tensor, history: list[dict[str, Any]], parts: ServerParts
) -> Checkpoint:
    """The server's state after ``server_round``."""
    return Checkpoint(
        round=server_round,
        weights=weights,
        history=list(history),
        aggregator=parts.aggregator.state_dict(),
        privacy=parts.privacy.state_dict() if parts.privacy.enabled else {},
        clients=parts.client_states.state_dict() if parts.client_states is not None else {},
        probes=parts.probes.state_dict(),
    )


def _restore(checkpoint: Checkpoint, strategy: FedsimStrategy, parts: ServerParts) -> None:
    """Put the state of ``checkpoint`` back into the run's server-side objects."""
    strategy.round_offset = checkpoint.round
    parts.aggregator.load_state_dict(checkpoint.aggregator)
    if parts.privacy.enabled:
        parts.privacy.load_state_dict(checkpoint.privacy)
    if parts.client_states is not None and checkpoint.clients:
        parts.client_states.load_state_dict(checkpoint.clients)
    parts.probes.load_state_dict(checkpoint.probes)


def _evaluate_global(
    fed: Federation, arrays: ArrayRecord, test_set: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, Any]:
    """Test accuracy and loss of the global model (a backdoor's ASR: the backdoor probe).

    In a multi-task federation ``accuracy`` and ``loss`` are the first task's, and
    ``task_accuracy`` maps every task to its accuracy.
    """
    model = fed.model("server")
    load_flat_params(model, from_array_record(arrays, WEIGHTS_KEY))
    x_test, y_test = test_set
    result = evaluate(model, x_test, y_test)
    figures: dict[str, Any] = {"accuracy": result.accuracy, "loss": result.loss}
    if fed.tasks is not None:  # ``accuracy`` is the first task's
        figures["task_accuracy"] = evaluate_tasks(model, x_test, y_test, fed.tasks)
    return figures


LAST_MEASURED = (
    "personalized_accuracy",
    "personalized_task_accuracy",
    "global_local_accuracy",
    "secagg_bound",
    "secagg_min_sum_size",
    "model_inconsistency_detected",
    "inversion_recovered",
    "certified_accuracy",
    "purifier_clean_accuracy",
    "crfl_certified_accuracy",
    "property_auc",
    "class_inference_confidence",
    "class_inference_fidelity",
    "canary_exposure",
    "canary_extracted",
    "canary_extracted_by_repeats",
)
"""Figures measured in some rounds only: ``final_<figure>`` is the last measured value."""


def _summarise(scenario: Scenario, history: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    last = history[-1] if history else {}
    times = [r["time_s"] for r in history]
    summary = {
        "name": scenario.name,
        "seed": scenario.seed,
        "runtime": scenario.runtime,
        "rounds": len(history),
        "final_accuracy": last.get("accuracy"),
        **({"final_task_accuracy": last["task_accuracy"]} if "task_accuracy" in last else {}),
        "final_loss": last.get("loss"),
        "best_accuracy": max((r["accuracy"] for r in history), default=None),
        "mean_round_s": sum(times) / len(times) if times else None,
        "wall_s": wall_s,
        "malicious_clients": sorted(federation_for(scenario).malicious),
    }
    for key in ("detection_precision", "detection_recall", "false_rejection_rate"):
        values = [r[key] for r in history if r.get(key) is not None]
        if values:
            summary[key] = sum(values) / len(values)
    strengths = [r["attack"]["strength"] for r in history if "strength" in r.get("attack", {})]
    if strengths:
        summary["attack_strength"] = sum(strengths) / len(strengths)
    for key in (
        "epsilon",
        "delta",
        "epsilon_central",
        "secagg_error",
        "secagg_s",
        "secagg_bytes",
        "secagg_messages",
    ):
        if key in last:
            summary[f"final_{key}"] = last[key]
    for key in LAST_MEASURED:
        reported = [r[key] for r in history if r.get(key) is not None]
        if reported:  # the last round that measured it (a probe's own final_* key wins)
            summary.setdefault(f"final_{key}", reported[-1])
    return summary


def make_server_app(
    scenario: Scenario | None = None,
    observer: RoundObserver | None = None,
    resume: Checkpoint | None = None,
) -> ServerApp:
    """Build the ServerApp for ``scenario`` (or for the run config's scenario file).

    ``resume``: a checkpoint to continue from (see :func:`run_server`).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if observer is not None:
            run_server(grid, scenario or _run_config_scenario(context), observer, resume)
            return
        # Under `flwr run`: write a run directory (see flwr_run_dir), no live display.
        resolved = scenario or _run_config_scenario(context)
        run_dir = flwr_run_dir(context.run_config, resolved.name)
        with ExitStack() as owned:
            try:
                # One run owns its directory from the first byte, as under `fedsim run`.
                owned.enter_context(claim_run_dir(run_dir, "run config out"))
                check_new_run_dir(run_dir, overwrite=False)
            except ScenarioError as e:
                raise RunError(f"run config out = {str(run_dir)!r}: {e.allowed}") from None
            log.warning("fedsim run directory: %s", run_dir.resolve())
            recorder = RunRecorder(run_dir, scenario_to_dict(resolved))
            try:
                run_server(grid, resolved, ProgressObserver(recorder, resolved, enabled=False))
            finally:
                recorder.close()
        log.warning("fedsim run finished: %s", run_dir.resolve())

    return app


def _run_config_scenario(context: Context) -> Scenario:
    """The scenario a ``flwr run`` names in its run config (key ``scenario``)."""
    return load_scenario(scenario_path(str(context.run_config["scenario"])))


def flwr_run_dir(run_config: Mapping[str, Any], name: str) -> Path:
    """The run directory of a ``flwr run``: run config ``out``, else ``runs/<name>-<time>``.

    Relative paths (``out``, and the default ``runs/``) are taken from the working directory
    of the process that runs the ServerApp, which the SuperLink starts in its own working
    directory: for ``flwr run``'s local SuperLink, the directory of the ``flwr run`` that
    started it. An absolute ``out`` is the same wherever the SuperLink runs.
    """
    out = str(run_config.get("out", "") or "").strip()
    if out:
        return Path(out).expanduser()
    return default_run_dir(name)


# `flwr run .` entry point: the scenario path comes from the run config.
app = make_server_app()
