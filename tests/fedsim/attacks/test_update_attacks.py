import pytest
import torch

from fedsim.attacks.gaussian import Gaussian
from fedsim.attacks.scaling import Scaling
from fedsim.attacks.sign_flip import SignFlip
from fedsim.errors import InvalidSettingError

DELTA = torch.tensor([1.0, -0.5, 0.25, 0.0], dtype=torch.float32)


def test_sign_flip_negates_and_scales():
    out = SignFlip().transform_update(DELTA)
    assert out.dtype == torch.float64
    assert out.tolist() == [-1.0, 0.5, -0.25, 0.0]
    assert SignFlip(scale=4.0).transform_update(DELTA).tolist() == [-4.0, 2.0, -1.0, 0.0]


def test_scaling_multiplies():
    assert Scaling(factor=-2.0).transform_update(DELTA).tolist() == [-2.0, 1.0, -0.5, 0.0]


def test_inputs_are_not_modified():
    delta = DELTA.clone()
    SignFlip().transform_update(delta)
    Scaling(3.0).transform_update(delta)
    assert torch.equal(delta, DELTA)


def test_gaussian_is_seeded_noise_of_std_sigma():
    attack = Gaussian(sigma=3.0)
    delta = torch.ones(20_000)
    a = attack.transform_update(delta, generator=torch.Generator().manual_seed(1))
    b = attack.transform_update(delta * 7, generator=torch.Generator().manual_seed(1))
    c = attack.transform_update(delta, generator=torch.Generator().manual_seed(2))
    assert a.dtype == torch.float64 and a.shape == delta.shape
    assert torch.equal(a, b)  # independent of the honest update's values
    assert not torch.equal(a, c)
    assert a.std().item() == pytest.approx(3.0, rel=0.03)
    assert abs(a.mean().item()) < 0.1


def test_gaussian_needs_a_generator():
    with pytest.raises(InvalidSettingError, match="generator"):
        Gaussian().transform_update(DELTA)


@pytest.mark.parametrize(
    "cls, params",
    [
        (SignFlip, {"scale": 0.0}),
        (SignFlip, {"scale": float("inf")}),
        (Gaussian, {"sigma": -1.0}),
        (Scaling, {"factor": 0.0}),
        (Scaling, {"factor": float("nan")}),
    ],
)
def test_invalid_settings(cls, params):
    with pytest.raises(InvalidSettingError, match=cls.name):
        cls(**params)


def test_non_vector_update_raises():
    with pytest.raises(InvalidSettingError, match=r"flat \(d,\)"):
        SignFlip().transform_update(torch.zeros(2, 2))
    with pytest.raises(InvalidSettingError, match="NaN"):
        SignFlip().transform_update(torch.tensor([float("nan")]))
