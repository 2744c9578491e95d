import math

import pytest
import torch
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from fedsim.errors import InvalidSettingError
from fedsim.inversion import (
    Reconstruction,
    label_accuracy,
    match_reconstructions,
    mse,
    psnr,
    reconstruction_metrics,
    ssim,
)


def constant(value, batch=1, shape=(1, 8, 8)):
    return torch.full((batch, *shape), value, dtype=torch.float64)


def test_constant_images_hand_values():
    rec, orig = constant(0.1), constant(0.0)

    assert mse(rec, orig) == pytest.approx(0.01)
    assert psnr(rec, orig) == pytest.approx(10 * math.log10(1 / 0.01))  # 20 dB
    assert psnr(rec, orig, data_range=(-1.0, 1.0)) == pytest.approx(10 * math.log10(4 / 0.01))


def test_psnr_is_per_image_then_averaged():
    rec = torch.cat([constant(0.1), constant(0.01)])
    orig = constant(0.0, batch=2)

    assert psnr(rec, orig) == pytest.approx((20 + 40) / 2)
    assert psnr(orig, orig) == math.inf


def test_ssim_hand_values():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    c1 = 0.01**2
    # constant images: no variance, so SSIM is the luminance term alone
    luminance = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)

    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(constant(0.2), constant(0.6)) == pytest.approx(luminance)
    with pytest.raises(InvalidSettingError, match="6×6"):
        ssim(constant(0.0, shape=(1, 4, 4)), constant(0.0, shape=(1, 4, 4)))


def test_metrics_match_torchmetrics():
    gen = torch.Generator().manual_seed(1)
    orig = torch.rand(4, 3, 12, 12, generator=gen) * 2 - 1
    rec = (orig + 0.2 * torch.randn(orig.shape, generator=gen)).clamp(-1, 1)

    expected_psnr = peak_signal_noise_ratio(
        rec.double(), orig.double(), data_range=2.0, dim=(1, 2, 3)
    )
    expected_ssim = structural_similarity_index_measure(rec.double(), orig.double(), data_range=2.0)

    assert mse(rec, orig) == pytest.approx(float(mean_squared_error(rec.double(), orig.double())))
    assert psnr(rec, orig, (-1.0, 1.0)) == pytest.approx(float(expected_psnr))
    assert ssim(rec, orig, (-1.0, 1.0)) == pytest.approx(float(expected_ssim))


def test_matching_undoes_a_permutation():
    gen = torch.Generator().manual_seed(2)
    orig = torch.rand(5, 1, 8, 8, generator=gen)
    perm = torch.tensor([3, 0, 4, 1, 2])
    rec = orig[perm] + 0.01 * torch.randn(orig.shape, generator=gen)

    found = match_reconstructions(rec, orig)

    assert torch.equal(rec[found], rec[torch.argsort(perm)])
    assert torch.equal(perm[found], torch.arange(5))


def test_reconstruction_metrics_match_before_scoring():
    gen = torch.Generator().manual_seed(3)
    orig = torch.rand(3, 1, 8, 8, generator=gen)
    labels = torch.tensor([2, 7, 1])
    perm = torch.tensor([2, 0, 1])
    rec = Reconstruction(x=orig[perm], labels=torch.tensor([1, 2, 0]), grad_loss=0.5)

    scores = reconstruction_metrics(orig, labels, rec)

    assert scores["mse"] == 0.0 and scores["psnr"] == math.inf
    assert scores["ssim"] == pytest.approx(1.0)
    assert scores["label_accuracy"] == pytest.approx(2 / 3)  # matched labels [2, 0, 1] vs [2, 7, 1]
    assert scores["grad_loss"] == 0.5


def test_label_accuracy_and_bad_shapes():
    assert label_accuracy(torch.tensor([0, 1]), torch.tensor([0, 1])) == 1.0
    with pytest.raises(InvalidSettingError, match="one length"):
        label_accuracy(torch.tensor([0]), torch.tensor([0, 1]))
    with pytest.raises(InvalidSettingError, match="same shape"):
        mse(constant(0.0), constant(0.0, batch=2))
    with pytest.raises(InvalidSettingError, match="data_range"):
        psnr(constant(0.0), constant(0.0), (1.0, 1.0))
