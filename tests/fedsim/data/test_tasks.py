import pytest
import torch

from fedsim.data.tasks import TASKS, task_set
from fedsim.errors import InvalidSettingError, UnknownNameError


def test_label_transforms_by_hand() -> None:
    y = torch.arange(10)
    assert TASKS.get("digit").labels(y).tolist() == list(range(10))
    assert TASKS.get("parity").labels(y).tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert TASKS.get("ge5").labels(y).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    # CIFAR-10: airplane 0, automobile 1, ship 8, truck 9 are vehicles (0); the rest animals
    assert TASKS.get("animal").labels(y).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert TASKS.get("parity").labels(y).dtype == torch.int64


def test_task_set_classes_and_assignment() -> None:
    ts = task_set(["digit", "parity", "ge5"], "digits", 10)
    assert ts.num_classes == (10, 2, 2)
    assert [ts.held_by(c, "round_robin") for c in range(4)] == [
        ("digit",),
        ("parity",),
        ("ge5",),
        ("digit",),
    ]
    assert ts.labels("ge5", torch.tensor([4, 5])).tolist() == [0, 1]
    assert task_set(["label", "animal"], "cifar10", 10).num_classes == (10, 2)


@pytest.mark.parametrize(
    ("names", "dataset", "needle"),
    [
        (["parity", "digit"], "digits", "identity task"),
        (["label", "parity"], "cifar10", "not on 'cifar10'"),
        (["label", "animal"], "digits", "not on 'digits'"),
        (["digit", "digit"], "digits", "twice"),
    ],
)
def test_task_set_refuses(names: list[str], dataset: str, needle: str) -> None:
    with pytest.raises(InvalidSettingError, match=needle):
        task_set(names, dataset, 10)


def test_unknown_task_lists_known() -> None:
    with pytest.raises(UnknownNameError, match="known: animal, digit, ge5, label, parity"):
        task_set(["digit", "odd"], "digits", 10)
