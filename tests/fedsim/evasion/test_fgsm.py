import pytest
import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion import FGSM


def test_fgsm_on_a_linear_softmax_model_equals_the_closed_form():
    # For logits z = W x + b, ∇_x CE(z, y) = W^T (softmax(z) − e_y).
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(32, 1, 2, 3)
    y = torch.randint(0, 4, (32,))
    eps = 0.07
    with torch.no_grad():
        p = torch.softmax(x.flatten(1) @ lin.weight.T + lin.bias, dim=1)
        grad = (p - nn.functional.one_hot(y, 4).float()) @ lin.weight
        expected = (x.flatten(1) + eps * grad.sign()).clamp(0, 1).view_as(x)
    got = FGSM(eps)(model, x, y, torch.Generator())
    assert torch.allclose(got, expected, atol=1e-7)
    assert FGSM(eps).label == "fgsm-0.07"


def test_fgsm_eps_zero_leaves_inputs_and_accuracy_unchanged(trained):
    x_adv = FGSM(0.0)(trained.model, trained.x, trained.y, torch.Generator())
    assert torch.equal(x_adv, trained.x)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_fgsm_rejects_bad_eps(eps):
    with pytest.raises(InvalidSettingError, match="fgsm needs a finite eps >= 0.0"):
        FGSM(eps)


def test_attacks_reject_inputs_outside_pixel_range(small_mlp, small_batch):
    x, y = small_batch
    with pytest.raises(InvalidSettingError, match="to_pixel_space"):
        FGSM(0.1)(small_mlp, x * 3 - 1, y, torch.Generator())
