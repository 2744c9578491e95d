import pytest
import torch
import torch.nn.functional as F

from fedsim.data.tasks import task_set
from fedsim.errors import InvalidSettingError
from fedsim.models import MODELS
from fedsim.models.head_averaging import holder_mean_heads
from fedsim.models.multitask import MultiTaskModel, head_mask
from fedsim.params import flat_params, load_flat_params
from fedsim.training import task_loss

CLASSES = {"digit": 10, "parity": 2, "ge5": 2}


def model(name: str = "cnn") -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel.from_registry(name, (1, 8, 8), CLASSES, width=4)


def test_one_tasks_loss_reaches_the_backbone_and_only_its_head() -> None:
    m = model()
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 3, 5, 7, 9])
    task_loss(task_set(list(CLASSES), "digits", 10), ["parity"])(m, x, y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())
    assert all(p.grad is not None for p in m.head("parity").parameters())
    assert all(p.grad is None for t in ("digit", "ge5") for p in m.head(t).parameters())


def test_forward_is_backbone_then_each_head() -> None:
    m = model()
    x = torch.rand(3, 1, 8, 8)
    out = m(x)
    assert list(out) == ["digit", "parity", "ge5"]
    features = m.backbone(x)
    for task, logits in out.items():
        head = m.head(task)
        torch.testing.assert_close(logits, F.linear(features, head.weight, head.bias))


@pytest.mark.parametrize("name", ["cnn", "mlp", "lenet5", "resnet"])
def test_every_registry_model_serves_as_backbone(name: str) -> None:
    params = {"cnn": {"width": 4}, "mlp": {"hidden": 8}}.get(name, {})
    shape = (1, 12, 12)
    m = MultiTaskModel.from_registry(name, shape, CLASSES, **params)
    single = MODELS.get(name)(shape, 10, **params)
    # the backbone plus a 10-class head has exactly the single-task model's parameters
    digit_head = sum(p.numel() for p in m.head("digit").parameters())
    backbone = sum(p.numel() for p in m.backbone.parameters())
    assert backbone + digit_head == sum(p.numel() for p in single.parameters())


def test_view_shares_every_parameter_in_order() -> None:
    m = model()
    view = m.as_single_task("ge5")
    assert [id(p) for p in view.parameters()] == [id(p) for p in m.parameters()]
    flat = torch.randn_like(flat_params(m))
    load_flat_params(view, flat)
    torch.testing.assert_close(flat_params(m), flat)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(view(x), m(x)["ge5"])
    with pytest.raises(KeyError, match="tasks: digit, parity, ge5"):
        m.as_single_task("odd")


def test_head_slices_and_mask_cover_the_heads_exactly() -> None:
    m = model()
    slices = m.head_slices()
    flat = flat_params(m)
    parity = m.head("parity")
    torch.testing.assert_close(
        flat[slices["parity"]], torch.cat([parity.weight.flatten(), parity.bias])
    )
    mask = head_mask(m)
    assert mask.sum() == sum(s.stop - s.start for s in slices.values())
    first = slices["digit"].start
    assert bool(mask[first:].all()) and not bool(mask[:first].any())
    assert head_mask(m.as_single_task("digit")).equal(mask)


def test_heads_averaged_over_holders_by_hand() -> None:
    # 3 clients × (2 backbone + 1 head a + 1 head b); a held by clients 0, 1; b by client 2
    updates = torch.tensor(
        [[1.0, 2.0, 3.0, 0.0], [3.0, 4.0, 6.0, 0.0], [5.0, 0.0, 0.0, 9.0]], dtype=torch.float64
    )
    weights = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    fedavg = weights @ updates / weights.sum()  # [3.0, 2.5, 3.75, 2.25]
    heads = {"a": slice(2, 3), "b": slice(3, 4)}
    out = holder_mean_heads(fedavg, updates, weights, heads, {"a": [1, 1, 0], "b": [0, 0, 1]})
    # backbone: FedAvg over all; a: (1·3 + 2·6)/3 = 5; b: client 2 alone = 9
    assert out.tolist() == [3.0, 2.5, 5.0, 9.0]
    # a head nobody holds this round does not move
    out = holder_mean_heads(fedavg, updates, weights, heads, {"a": [1, 1, 0], "b": [0, 0, 0]})
    assert out.tolist() == [3.0, 2.5, 5.0, 0.0]


def test_refuses_a_model_whose_last_linear_is_not_the_output() -> None:
    class Odd(torch.nn.Module):
        def __init__(self, *_: object) -> None:
            super().__init__()
            self.out = torch.nn.Linear(10, 10)  # the output layer, registered first
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.fc(x.flatten(1))))

    MODELS.register("odd_test_model")(Odd)
    try:
        with pytest.raises(InvalidSettingError, match="not its output layer"):
            MultiTaskModel.from_registry("odd_test_model", (1, 8, 8), CLASSES)
    finally:
        MODELS._items.pop("odd_test_model")
