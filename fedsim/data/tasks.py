r"""Prediction tasks over the same inputs: a task name → a label transform and its class count.

A multi-task federation (``data.tasks``) trains one shared backbone and one linear head per
task (:class:`fedsim.models.MultiTaskModel`). The data keep the dataset's own labels
:math:`y`; task :math:`t` reads them through its transform :math:`g_t`, so every task is
defined for every example and no copy of the data is made per task:

========  =====================================  =========  ==================================
task      :math:`g_t(y)`                         classes    datasets
========  =====================================  =========  ==================================
label     :math:`y`                              the data's every dataset
digit     :math:`y`                              10         digits, mnist
parity    :math:`y \bmod 2`                      2          digits, mnist
ge5       :math:`[y \ge 5]`                      2          digits, mnist
animal    :math:`[y \notin \{0, 1, 8, 9\}]`      2          cifar10 (airplane, automobile,
                                                            ship, truck are the vehicles)
========  =====================================  =========  ==================================

The first task of ``data.tasks`` must be an identity task (``label``, or ``digit`` on a digit
dataset): it is the task every single-task part of fedsim (``accuracy``, the probes, label
attacks) reads, on the dataset's own labels.

Example
-------
>>> y = torch.tensor([0, 3, 5, 8])
>>> TASKS.get("parity").labels(y).tolist(), TASKS.get("ge5").labels(y).tolist()
([0, 1, 1, 0], [0, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from fedsim.errors import InvalidSettingError
from fedsim.registry import Registry

__all__ = ["TASKS", "Task", "TaskSet", "task_set"]

DIGIT_DATASETS = frozenset({"digits", "mnist"})
"""Datasets whose labels are the digits 0–9 (``digit``, ``parity``, ``ge5`` apply)."""


@dataclass(frozen=True)
class Task:
    """One prediction task: how it reads the dataset's labels.

    Attributes
    ----------
    name : str
        The task's ``data.tasks`` name.
    transform : callable
        ``transform(y) -> labels``: int64 labels of the task from the dataset's labels.
    classes : int or None
        The task's class count; ``None``: the dataset's own (an identity task).
    datasets : frozenset of str or None
        The datasets the task is defined on; ``None``: every dataset.
    """

    name: str
    transform: Callable[[torch.Tensor], torch.Tensor]
    classes: int | None = None
    datasets: frozenset[str] | None = None

    @property
    def identity(self) -> bool:
        """Whether the task's labels are the dataset's own."""
        return self.classes is None

    def labels(self, y: torch.Tensor) -> torch.Tensor:
        """The task's int64 labels of dataset labels ``y``."""
        return self.transform(y).to(torch.int64)

    def num_classes(self, dataset_classes: int) -> int:
        """The task's class count on a dataset with ``dataset_classes`` classes."""
        return dataset_classes if self.classes is None else self.classes

    def supports(self, dataset: str) -> bool:
        """Whether the task is defined on ``dataset``."""
        return self.datasets is None or dataset in self.datasets


TASKS: Registry[Task] = Registry("task")


def _register(task: Task) -> None:
    TASKS.register(task.name)(task)


_register(Task("label", lambda y: y))
_register(Task("digit", lambda y: y, None, DIGIT_DATASETS))
_register(Task("parity", lambda y: y % 2, 2, DIGIT_DATASETS))
_register(Task("ge5", lambda y: y >= 5, 2, DIGIT_DATASETS))
_VEHICLES = torch.tensor([0, 1, 8, 9])  # CIFAR-10's airplane, automobile, ship, truck
_register(Task("animal", lambda y: ~torch.isin(y, _VEHICLES), 2, frozenset({"cifar10"})))


@dataclass(frozen=True)
class TaskSet:
    """The tasks of a multi-task federation, in ``data.tasks`` order, on one dataset.

    Attributes
    ----------
    tasks : tuple of Task
        The tasks; the first is an identity task.
    num_classes : tuple of int
        Each task's class count on the dataset.
    """

    tasks: tuple[Task, ...]
    num_classes: tuple[int, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The task names, in order."""
        return tuple(t.name for t in self.tasks)

    def labels(self, task: str, y: torch.Tensor) -> torch.Tensor:
        """Task ``task``'s labels of dataset labels ``y``."""
        return self.tasks[self.names.index(task)].labels(y)

    def held_by(self, client_id: int, assignment: str) -> tuple[str, ...]:
        """The tasks client ``client_id`` trains: ``all``, or one by ``round_robin``.

        Examples
        --------
        >>> ts = task_set(["digit", "parity"], "digits", 10)
        >>> ts.held_by(3, "all"), ts.held_by(3, "round_robin"), ts.held_by(4, "round_robin")
        (('digit', 'parity'), ('parity',), ('digit',))
        """
        if assignment == "all":
            return self.names
        if assignment == "round_robin":
            return (self.names[client_id % len(self.names)],)
        raise InvalidSettingError(
            f"task assignment {assignment!r} is unknown; known: all, round_robin"
        )


def task_set(names: Sequence[str], dataset: str, dataset_classes: int) -> TaskSet:
    """Resolve ``data.tasks`` on ``dataset`` (of ``dataset_classes`` classes).

    Raises
    ------
    UnknownNameError
        A name is no registered task (the known ones are listed).
    InvalidSettingError
        No task, a task twice, a task not defined on ``dataset``, or a first task that is not
        an identity task.
    """
    if not names:
        raise InvalidSettingError("data.tasks needs at least one task (or null)")
    if len(set(names)) != len(names):
        raise InvalidSettingError(f"data.tasks names a task twice: {list(names)}")
    tasks = tuple(TASKS.get(n) for n in names)
    for task in tasks:
        if not task.supports(dataset):
            raise InvalidSettingError(
                f"task {task.name!r} is defined on {', '.join(sorted(task.datasets or ()))}, "
                f"not on {dataset!r}; every dataset has 'label'"
            )
    if not tasks[0].identity:
        identity = [n for n in TASKS.names() if TASKS.get(n).identity]
        raise InvalidSettingError(
            f"the first task is the one single-task figures and probes read on the dataset's "
            f"own labels: it must be an identity task ({', '.join(identity)}), got {names[0]!r}"
        )
    return TaskSet(tasks, tuple(t.num_classes(dataset_classes) for t in tasks))
