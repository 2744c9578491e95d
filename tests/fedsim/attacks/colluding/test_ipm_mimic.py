import pytest
import torch

from fedsim.attacks.colluding.ipm import IPM
from fedsim.attacks.colluding.mimic import Mimic
from fedsim.errors import InvalidSettingError

G = torch.Generator()
U = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)


def test_ipm_is_minus_epsilon_mean():
    out = IPM()(U, n=6, f=3, generator=G)
    assert out.updates.shape == (3, 3)
    for row in out.updates:
        assert row.tolist() == pytest.approx([-0.3, -0.1, -0.2], abs=1e-15)
    assert out.info == {"epsilon": 0.1}
    big = IPM(epsilon=100.0)(U, n=6, f=1, generator=G)
    assert big.updates[0].tolist() == pytest.approx([-300.0, -100.0, -200.0])


def test_ipm_rejects_bad_epsilon():
    with pytest.raises(InvalidSettingError, match="epsilon"):
        IPM(epsilon=0.0)


def test_mimic_copies_the_target_row():
    out = Mimic(target_index=2)(U, n=5, f=2, generator=G)
    assert out.updates.tolist() == [[5.0, 3.0, 2.0]] * 2
    assert out.info == {"target_index": 2}
    out.updates[0, 0] = 99.0
    assert U[2, 0] == 5.0  # the crafted rows do not alias the observed ones


def test_mimic_target_must_be_observed():
    with pytest.raises(InvalidSettingError, match="only 3 updates"):
        Mimic(target_index=3)(U, n=5, f=2, generator=G)
    with pytest.raises(InvalidSettingError, match="target_index"):
        Mimic(target_index=-1)
