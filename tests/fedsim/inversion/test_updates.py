import pytest
import torch

from fedsim.errors import InvalidSettingError
from fedsim.inversion import model_gradients, unflatten_like, update_as_gradient


@pytest.mark.parametrize("name", ["lenet_sigmoid", "cnn", "mlp"])
def test_one_sgd_step_update_is_the_gradient(name, make_model):
    model = make_model(name, (1, 8, 8), 10, seed=0).double()
    before = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (4,), generator=gen)
    true = model_gradients(model, x, y)
    lr = 0.05

    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    optimiser.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimiser.step()
    delta = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]

    for estimate, exact in zip(update_as_gradient(delta, lr, 1), true, strict=True):
        torch.testing.assert_close(estimate, exact, rtol=1e-9, atol=1e-12)


def test_several_steps_divide_by_lr_times_steps():
    delta = [torch.tensor([0.6, -0.3])]

    (g,) = update_as_gradient(delta, lr=0.1, local_steps=3)

    torch.testing.assert_close(g, torch.tensor([-2.0, 1.0]))


def test_flat_update_round_trip(make_model):
    model = make_model("cnn", (1, 8, 8), 10, seed=0)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).double()

    pieces = unflatten_like(flat, model)

    assert [p.shape for p in pieces] == [p.shape for p in model.parameters()]
    params = list(model.parameters())
    assert all(torch.equal(a, b.detach().double()) for a, b in zip(pieces, params, strict=True))
    with pytest.raises(InvalidSettingError, match="parameters"):
        unflatten_like(flat[:-1], model)


def test_model_gradients_leave_the_model_alone(make_model):
    model = make_model("mlp", (1, 8, 8), 10, seed=0)
    model.requires_grad_(False)

    grads = model_gradients(model, torch.rand(2, 1, 8, 8), torch.tensor([1, 2]))

    assert len(grads) == len(list(model.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("lr", "steps", "message"),
    [(0.0, 1, "lr > 0, got 0.0"), (float("inf"), 1, "lr"), (0.1, 0, "local_steps ≥ 1, got 0")],
)
def test_invalid_arguments_raise(lr, steps, message):
    with pytest.raises(InvalidSettingError, match=message):
        update_as_gradient([torch.zeros(2)], lr, steps)
