import torch
from torch import nn

from fedsim.data.transforms import normalize
from fedsim.evasion import FGSM, PixelSpaceModel, model_in_pixel_space, to_pixel_space


def test_wrapped_model_on_pixels_equals_model_on_normalised_inputs():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    mean, std = (0.4, 0.6), (0.2, 0.3)
    pixels = torch.rand(5, 2, 3, 3)
    wrapped = model_in_pixel_space(inner, mean, std)
    assert isinstance(wrapped, PixelSpaceModel)
    assert torch.allclose(wrapped(pixels), inner(normalize(pixels, mean, std)), atol=1e-6)
    assert torch.allclose(
        to_pixel_space(normalize(pixels, mean, std), mean, std), pixels, atol=1e-6
    )
    assert list(wrapped.state_dict()) == [f"model.{k}" for k in inner.state_dict()]


def test_the_attack_budget_is_in_pixels_not_in_normalised_units():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    std = (0.25,)
    wrapped = model_in_pixel_space(inner, (0.5,), std)
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    x_adv = FGSM(0.1)(wrapped, x, y, torch.Generator())
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    # in the inner model's units the same step is ε/σ = 0.4
    moved = (normalize(x_adv, (0.5,), std) - normalize(x, (0.5,), std)).abs()
    assert float(moved.max()) > 0.39
