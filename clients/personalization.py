"""A personalized-FL client's round (``clients.personalization``): personal state in, accuracy out.

The client keeps its personal part (a head for FedPer and FedRep, a whole model for Ditto)
in its node state under :data:`~fedsim.protocol.PERSONAL_KEY`, trains with the method of
:mod:`fedsim.personalization`, sends the update of the shared weights only, and reports its
personal model's accuracy on its own test split (:data:`~fedsim.protocol.PERSONAL_ACCURACY`,
the first task's in a multi-task federation). The personal part never leaves the node, so a
resumed run starts it again from the global model.
"""

from __future__ import annotations

import torch
from flwr.app import Context

from clients.train_round import TrainJob
from fedsim.params import load_flat_params
from fedsim.personalization import LocalRound, build_personalization
from fedsim.protocol import (
    GLOBAL_ACCURACY,
    PERSONAL_ACCURACY,
    PERSONAL_KEY,
    PERSONAL_TASK_ACCURACY,
    from_array_record,
    to_array_record,
)
from fedsim.seeding import Stream, torch_generator
from fedsim.training import TrainResult, evaluate, evaluate_tasks, task_loss

__all__ = ["train_personal"]


def train_personal(
    job: TrainJob, context: Context, model: torch.nn.Module
) -> tuple[torch.Tensor, TrainResult, dict[str, float]]:
    """Run the job's personalized round on ``model`` (which holds the global weights).

    Returns the shared weights to compute the update from, the training result, and the
    metrics measured on the client's own test split (none when that split is empty): the
    personal model's accuracy (:data:`~fedsim.protocol.PERSONAL_ACCURACY`; with
    ``data.tasks`` the first task's, and each task's under
    :data:`~fedsim.protocol.PERSONAL_TASK_ACCURACY` ``+ task``, for the tasks the client holds
    only), and for a method without a local head (Ditto) the received global model's
    (:data:`~fedsim.protocol.GLOBAL_ACCURACY`).
    """
    fed, client = job.fed, job.client_id
    config = fed.scenario.clients.personalization
    if config is None:
        raise ValueError("the scenario has no clients.personalization")
    method = build_personalization(config)
    x_test, y_test = fed.data.client_test(client)
    metrics: dict[str, float] = {}
    if len(y_test) and not method.local_head:  # the global model on the client's own data
        metrics[GLOBAL_ACCURACY] = evaluate(model, x_test, y_test).accuracy
    stored = context.state.array_records.get(PERSONAL_KEY)
    state = None if stored is None else from_array_record(stored, PERSONAL_KEY)
    loss = None if fed.tasks is None else task_loss(fed.tasks, fed.client_tasks(client))
    personal_rng = torch_generator(fed.scenario.seed, Stream.PERSONAL, job.server_round, client)
    local = LocalRound(
        job.global_weights,
        state,
        job.x,
        job.y,
        job.settings,
        job.generator(),
        personal_rng,
        fed.data.dataset.augment,
        loss,
    )
    outcome = method(model, local)
    context.state[PERSONAL_KEY] = to_array_record(PERSONAL_KEY, outcome.state)
    if len(y_test) == 0:
        return outcome.shared, outcome.result, metrics
    load_flat_params(model, outcome.personal)
    if fed.tasks is None:
        metrics[PERSONAL_ACCURACY] = evaluate(model, x_test, y_test).accuracy
        return outcome.shared, outcome.result, metrics
    held = fed.client_tasks(client)  # a head it never trains says nothing about it
    for task, accuracy in evaluate_tasks(model, x_test, y_test, fed.tasks).items():
        if task in held:
            metrics[PERSONAL_TASK_ACCURACY + task] = accuracy
    if fed.tasks.names[0] in held:
        metrics[PERSONAL_ACCURACY] = metrics[PERSONAL_TASK_ACCURACY + fed.tasks.names[0]]
    return outcome.shared, outcome.result, metrics
