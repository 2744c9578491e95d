import pytest
import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models import MODELS, build_model


@pytest.mark.parametrize(
    ("shape", "features"), [((1, 8, 8), 48), ((1, 28, 28), 588), ((3, 32, 32), 768)]
)
def test_head_is_sized_from_the_input(shape, features):
    model = build_model("lenet_sigmoid", shape, 10)

    out = model(torch.zeros(2, *shape))

    assert out.shape == (2, 10)
    assert model.head.in_features == features


def test_is_smooth_and_has_no_batchnorm():
    model = build_model("lenet_sigmoid", (3, 32, 32), 10)

    kinds = {type(m) for m in model.modules()}

    assert "lenet_sigmoid" in MODELS
    assert nn.Sigmoid in kinds
    assert not kinds & {nn.ReLU, nn.MaxPool2d, nn.BatchNorm2d, nn.BatchNorm1d}


def test_second_derivative_through_the_gradient_is_nonzero():
    model = build_model("lenet_sigmoid", (1, 8, 8), 4).double()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)

    loss = nn.functional.cross_entropy(model(x), torch.tensor([1]))
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    (second,) = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), x)

    assert second.abs().sum() > 0


def test_default_init_is_uniform_in_range_and_seeded():
    torch.manual_seed(3)
    a = build_model("lenet_sigmoid", (1, 8, 8), 10)
    torch.manual_seed(3)
    b = build_model("lenet_sigmoid", (1, 8, 8), 10, init_range=0.1)

    assert max(p.abs().max().item() for p in a.parameters()) <= 0.5
    assert max(p.abs().max().item() for p in b.parameters()) <= 0.1
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    assert all(torch.allclose(p / 0.5, q / 0.1) for p, q in pairs)


@pytest.mark.parametrize("params", [{"width": 0}, {"strides": (2, 2)}, {"init_range": -1.0}])
def test_invalid_settings_raise(params):
    with pytest.raises(InvalidSettingError, match="lenet_sigmoid"):
        build_model("lenet_sigmoid", (1, 8, 8), 10, **params)
