import math

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from fedsim.errors import InvalidSettingError
from fedsim.privacy import (
    AdaptiveClip,
    CentralAccountant,
    DPFedAvg,
    central_epsilon,
    central_sample_rate,
    clip_updates,
)

U = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_clip_bounds_every_norm_and_keeps_directions():
    g = gen(1)
    scale = 4 * torch.rand(50, 1, generator=g, dtype=torch.float64)
    updates = torch.randn(50, 20, generator=g, dtype=torch.float64) * scale
    updates[0] = 0.0

    clipped, norms = clip_updates(updates, 1.5)

    assert bool((clipped.norm(dim=1) <= 1.5 + 1e-12).all())
    torch.testing.assert_close(norms, updates.norm(dim=1))
    small = norms <= 1.5
    assert torch.equal(clipped[small], updates[small])
    big = ~small
    torch.testing.assert_close(
        clipped[big] / clipped[big].norm(dim=1, keepdim=True), updates[big] / norms[big, None]
    )
    assert torch.equal(clipped[0], torch.zeros(20, dtype=torch.float64))


def test_zero_noise_output_is_clipped_sum_over_expected_clients():
    # Prepare: S = 3; norms √5 ≈ 2.236 (kept), √13 ≈ 3.606 and √38 ≈ 6.164 (clipped); m = 5 ≠ n
    s13, s38 = math.sqrt(13), math.sqrt(38)
    expected = (
        torch.tensor(
            [1 + 3 * 3 / s13 + 5 * 3 / s38, 3 * 3 / s38, 2 + 2 * 3 / s13 + 2 * 3 / s38],
            dtype=torch.float64,
        )
        / 5
    )

    # Execute
    result = DPFedAvg(noise_multiplier=0.0, clip=3.0, expected_clients=5)(U, gen())

    # Assert
    torch.testing.assert_close(result.update, expected, atol=1e-12, rtol=0)
    assert result.noise_std == 0.0
    assert result.info["clipped_fraction"] == pytest.approx(2 / 3)


def test_measured_noise_std_matches_z_s_over_m():
    z, s, m, d = 1.3, 0.7, 4, 200_000
    updates = torch.zeros(3, d, dtype=torch.float64)

    result = DPFedAvg(noise_multiplier=z, clip=s, expected_clients=m)(updates, gen(5))

    assert result.noise_std == pytest.approx(z * s / m)
    assert result.info["noise_std"] == result.noise_std
    assert float(result.update.std()) == pytest.approx(z * s / m, rel=0.02)
    assert abs(float(result.update.mean())) < 5 * z * s / m / math.sqrt(d)


def test_same_generator_seed_gives_same_noise():
    mech = DPFedAvg(noise_multiplier=1.0, clip=1.0, expected_clients=3)
    a, b, c = mech(U, gen(9)), mech(U, gen(9)), mech(U, gen(10))
    assert torch.equal(a.update, b.update)
    assert not torch.equal(a.update, c.update)


def test_server_step_refuses_unclipped_updates():
    mech = DPFedAvg(noise_multiplier=1.0, clip=1.0, expected_clients=3)
    with pytest.raises(InvalidSettingError, match="client_step"):
        mech.server_step(U, U.norm(dim=1), gen())


def test_adaptive_clip_grows_when_every_update_is_clipped():
    ac = AdaptiveClip(1.0, target_quantile=0.5, clip_lr=0.2, count_noise_multiplier=0.0)

    fraction = ac.update(torch.tensor([2.0, 3.0, 4.0, 5.0]), expected_clients=4, generator=gen())

    assert fraction == 0.0
    assert ac.clip == pytest.approx(math.exp(0.2 * 0.5))


def test_adaptive_clip_shrinks_when_no_update_is_clipped():
    ac = AdaptiveClip(10.0, target_quantile=0.5, clip_lr=0.2, count_noise_multiplier=0.0)

    fraction = ac.update(torch.tensor([2.0, 3.0, 4.0, 5.0]), expected_clients=4, generator=gen())

    assert fraction == 1.0
    assert ac.clip == pytest.approx(10.0 * math.exp(-0.2 * 0.5))


def test_adaptive_clip_with_count_noise_moves_the_right_way_and_tracks_the_quantile():
    # m = 100, σ_b = m/20 = 5: noise std on the fraction is 0.05
    norms = torch.arange(1, 101, dtype=torch.float64)
    g = gen(4)
    up = AdaptiveClip(0.5, count_noise_multiplier=5.0)
    down = AdaptiveClip(500.0, count_noise_multiplier=5.0)
    up.update(norms, 100, g)
    down.update(norms, 100, g)
    assert up.clip > 0.5 and down.clip < 500.0

    tracker = AdaptiveClip(1.0, target_quantile=0.3, clip_lr=0.2, count_noise_multiplier=5.0)
    for _ in range(200):
        tracker.update(norms, 100, g)
    assert 20.0 < tracker.clip < 40.0


def test_effective_noise_multiplier_follows_andrew_et_al():
    z, m = 1.0, 100
    ac = AdaptiveClip(1.0, count_noise_multiplier=m / 20)

    z_delta = ac.effective_noise_multiplier(z)

    assert z_delta == pytest.approx((z**-2 - (2 * m / 20) ** -2) ** -0.5)
    assert z_delta > z
    assert ac.effective_noise_multiplier(0.0) == 0.0
    with pytest.raises(InvalidSettingError, match="sigma_b"):
        AdaptiveClip(1.0, count_noise_multiplier=0.4).effective_noise_multiplier(1.0)
    with pytest.raises(InvalidSettingError):
        DPFedAvg(
            noise_multiplier=1.0,
            clip=AdaptiveClip(1.0, count_noise_multiplier=0.5),
            expected_clients=3,
        )


def test_dp_fedavg_with_adaptive_clip_uses_z_delta_and_updates_the_clip():
    ac = AdaptiveClip(1.0, target_quantile=0.5, clip_lr=0.2, count_noise_multiplier=2.0)
    mech = DPFedAvg(noise_multiplier=1.0, clip=ac, expected_clients=3)
    z_delta = (1.0 - 1 / 16) ** -0.5

    result = mech(U, gen(2))

    assert result.info["clip"] == 1.0
    assert result.info["noise_multiplier"] == pytest.approx(z_delta)
    assert result.noise_std == pytest.approx(z_delta * 1.0 / 3)
    assert result.info["next_clip"] == ac.clip == mech.clip
    expected_clip = math.exp(-0.2 * (result.info["unclipped_fraction_noisy"] - 0.5))
    assert ac.clip == pytest.approx(expected_clip)


@pytest.mark.parametrize(
    "call",
    [
        lambda: DPFedAvg(noise_multiplier=-1.0, clip=1.0, expected_clients=3),
        lambda: DPFedAvg(noise_multiplier=1.0, clip=0.0, expected_clients=3),
        lambda: DPFedAvg(noise_multiplier=1.0, clip=1.0, expected_clients=0),
        lambda: AdaptiveClip(0.0, count_noise_multiplier=1.0),
        lambda: AdaptiveClip(1.0, target_quantile=1.5, count_noise_multiplier=1.0),
        lambda: AdaptiveClip(1.0, clip_lr=0.0, count_noise_multiplier=1.0),
        lambda: clip_updates(U[0], 1.0),
        lambda: central_sample_rate(10, 5, "poisson"),
        lambda: central_sample_rate(5, 10, "uniform"),
    ],
)
def test_invalid_settings_raise(call):
    with pytest.raises(InvalidSettingError):
        call()


def test_central_epsilon_matches_opacus_rdp_stepped_per_round():
    z, m, n, rounds, delta = 1.1, 10, 100, 30, 1e-5
    q = central_sample_rate(m, n, "poisson")
    reference = RDPAccountant()
    for _ in range(rounds):
        reference.step(noise_multiplier=z, sample_rate=q)

    assert q == 0.1
    assert central_epsilon(z, q, rounds, delta) == reference.get_epsilon(delta)


def test_central_epsilon_prv_matches_opacus_prv():
    reference = PRVAccountant()
    reference.history = [(1.1, 0.1, 30)]
    assert central_epsilon(1.1, 0.1, 30, 1e-5, accountant="prv") == pytest.approx(
        reference.get_epsilon(1e-5)
    )


def test_poisson_amplification_gives_smaller_epsilon_than_none():
    poisson = central_epsilon(1.1, central_sample_rate(10, 100, "poisson"), 30, 1e-5)
    none = central_epsilon(1.1, central_sample_rate(10, 100, "none"), 30, 1e-5)
    assert central_sample_rate(10, 100, "none") == 1.0
    assert poisson < none


def test_central_accountant_records_rounds_and_predicts_the_next():
    acc = CentralAccountant(1.1, 0.1, delta=1e-5)
    assert acc.epsilon() == 0.0

    predicted = acc.epsilon_after(1)
    acc.record_round()
    assert acc.epsilon() == predicted == central_epsilon(1.1, 0.1, 1, 1e-5)

    acc.record_round()
    restored = CentralAccountant.from_list(acc.to_list())
    assert restored.rounds == 2
    assert restored.epsilon() == acc.epsilon()
    assert acc.epsilon_after(3) == central_epsilon(1.1, 0.1, 5, 1e-5)
    assert acc.epsilon_after(3) > acc.epsilon()


def test_adaptive_clip_centres_the_bits_when_fewer_clients_than_expected_reply():
    # Andrew et al.: b̃ = (Σ(bᵢ − ½) + noise)/m + ½; with n = 2 of m = 4, both clipped: b̃ = 1/4
    ac = AdaptiveClip(1.0, target_quantile=0.5, clip_lr=0.2, count_noise_multiplier=0.0)

    fraction = ac.update(torch.tensor([2.0, 3.0]), expected_clients=4, generator=gen())

    assert fraction == 0.25
    assert ac.clip == pytest.approx(math.exp(-0.2 * (0.25 - 0.5)))
