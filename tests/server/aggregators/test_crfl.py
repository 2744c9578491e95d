"""CRFL's server step (clip and perturb the global model); its certification is in
tests/fedsim/certify/test_crfl.py."""

import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators.crfl import crfl_clip_and_perturb


def test_clip_and_perturb():
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)

    clipped = crfl_clip_and_perturb(w, 1.0, 0.0, torch.Generator())
    kept = crfl_clip_and_perturb(w, 10.0, 0.0, torch.Generator())

    torch.testing.assert_close(clipped, torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert torch.equal(kept, w)


def test_noise_has_the_requested_std_and_is_seeded():
    w = torch.zeros(20_000, dtype=torch.float64)

    a = crfl_clip_and_perturb(w, 1.0, 0.01, torch.Generator().manual_seed(1))
    b = crfl_clip_and_perturb(w, 1.0, 0.01, torch.Generator().manual_seed(1))

    assert float(a.std()) == pytest.approx(0.01, rel=0.03)
    assert torch.equal(a, b)


def test_bad_server_step_settings_are_rejected():
    with pytest.raises(InvalidSettingError, match="crfl needs a finite rho > 0.0"):
        crfl_clip_and_perturb(torch.ones(2), 0.0, 0.1, torch.Generator())
