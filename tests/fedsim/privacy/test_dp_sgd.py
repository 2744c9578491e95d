import copy

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models.basic import CNN
from fedsim.privacy import DPSettings, calibrate_noise, local_steps, train_dp_sgd
from fedsim.training import TrainSettings


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def tiny_data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def per_sample_grad(model, x, y):
    model.zero_grad()
    nn.functional.cross_entropy(model(x[None]), y[None]).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def run(model, x, y, seed=0, **overrides):
    settings = dict(
        epochs=1,
        batch_size=4,
        lr=0.1,
        momentum=0.0,
        weight_decay=0.0,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=True,
        device="cpu",
    )
    settings.update(overrides)
    train = TrainSettings(
        settings.pop("epochs"),
        settings.pop("batch_size"),
        settings.pop("lr"),
        settings.pop("momentum"),
        settings.pop("weight_decay"),
    )
    dp = DPSettings(settings.pop("max_grad_norm"), settings.pop("poisson_sampling"))
    generator = torch.Generator().manual_seed(seed)
    return train_dp_sgd(model, x, y, train, dp, generator=generator, **settings)


def test_every_per_sample_gradient_is_clipped():
    # Prepare: one full batch step without noise, lr 1, small C so every sample is clipped
    x, y = tiny_data(n=8)
    model = tiny_model()
    before = flat(model)
    ref = copy.deepcopy(model)
    clip = 0.05
    grads = torch.stack([per_sample_grad(ref, x[i], y[i]) for i in range(8)])
    assert bool((grads.norm(dim=1) > clip).all())
    clipped = grads * (clip / grads.norm(dim=1)).clamp(max=1.0)[:, None]

    # Execute
    result = run(
        model,
        x,
        y,
        batch_size=8,
        lr=1.0,
        noise_multiplier=0.0,
        max_grad_norm=clip,
        poisson_sampling=False,
    )

    # Assert: Δ = −lr · mean of clipped per-sample gradients, so ‖Δ‖ ≤ lr·C
    delta = flat(model) - before
    assert result.steps == 1
    torch.testing.assert_close(delta, -clipped.mean(dim=0), atol=1e-6, rtol=1e-4)
    assert delta.norm() <= clip * (1 + 1e-5)


def test_one_sample_batches_bound_each_step_by_clip():
    x, y = tiny_data(n=6)
    model = tiny_model()
    before = flat(model)

    result = run(
        model,
        x[:1],
        y[:1],
        batch_size=1,
        lr=1.0,
        noise_multiplier=0.0,
        max_grad_norm=0.01,
        poisson_sampling=False,
    )

    assert result.steps == 1
    assert (flat(model) - before).norm() == pytest.approx(0.01, rel=1e-4)


def test_fixed_batches_without_noise_equal_plain_sgd():
    # Prepare: the reference replays the same shuffles from the same seed
    x, y = tiny_data(n=20)
    model, ref = tiny_model(), tiny_model()
    settings = dict(epochs=2, batch_size=5, lr=0.05, momentum=0.9, weight_decay=1e-3)
    g = torch.Generator().manual_seed(7)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(2):
        order = torch.randperm(20, generator=g)
        for i in range(4):
            idx = order[i * 5 : (i + 1) * 5]
            opt.zero_grad()
            nn.functional.cross_entropy(ref(x[idx]), y[idx]).backward()
            opt.step()

    # Execute
    result = run(
        model,
        x,
        y,
        seed=7,
        noise_multiplier=0.0,
        max_grad_norm=1e6,
        poisson_sampling=False,
        **settings,
    )

    # Assert
    assert result.steps == 8
    torch.testing.assert_close(flat(model), flat(ref), atol=1e-5, rtol=1e-5)


def test_poisson_batches_without_noise_equal_plain_sgd_over_expected_batch():
    # Prepare: q = 0.1, so some batches are empty (noise-only steps still run the optimizer)
    x, y = tiny_data(n=20)
    model, ref = tiny_model(), tiny_model()
    g = torch.Generator().manual_seed(3)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-2)
    empty = 0
    for _ in range(2 * 10):
        idx = torch.nonzero(torch.rand(20, generator=g) < 0.1).flatten()
        opt.zero_grad()
        if len(idx):
            loss = nn.functional.cross_entropy(ref(x[idx]), y[idx], reduction="sum") / 2
            loss.backward()
        else:
            empty += 1
            for p in ref.parameters():
                p.grad = torch.zeros_like(p)
        opt.step()
    assert empty > 0

    # Execute
    result = run(
        model,
        x,
        y,
        seed=3,
        epochs=2,
        batch_size=2,
        lr=0.1,
        momentum=0.5,
        weight_decay=1e-2,
        noise_multiplier=0.0,
        max_grad_norm=1e6,
    )

    # Assert
    assert result.steps == 20
    torch.testing.assert_close(flat(model), flat(ref), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("poisson", [True, False])
def test_same_seed_gives_same_parameters_and_noise_is_applied(poisson):
    x, y = tiny_data()
    a, b, c, quiet = tiny_model(), tiny_model(), tiny_model(), tiny_model()

    run(a, x, y, seed=11, poisson_sampling=poisson)
    run(b, x, y, seed=11, poisson_sampling=poisson)
    run(c, x, y, seed=12, poisson_sampling=poisson)
    run(quiet, x, y, seed=11, poisson_sampling=poisson, noise_multiplier=0.0)

    assert torch.equal(flat(a), flat(b))
    assert not torch.allclose(flat(a), flat(c))
    assert not torch.allclose(flat(a), flat(quiet))


@pytest.mark.parametrize("poisson", [True, False])
def test_steps_sample_rate_and_examples(poisson):
    x, y = tiny_data(n=25)

    result = run(tiny_model(), x, y, epochs=3, batch_size=4, poisson_sampling=poisson)

    assert result.steps == 18 == local_steps(25, 4, 3)
    assert result.sample_rate == 4 / 25
    assert result.num_examples == 25
    assert result.loss > 0


def test_model_is_restored_and_can_train_again():
    x, y = tiny_data()
    model = tiny_model()
    model.eval()

    run(model, x, y)
    run(model, x, y, seed=1)  # a second wrap would fail if hooks were left behind

    assert type(model) is nn.Sequential and not model.training
    assert not hasattr(model, "autograd_grad_sample_hooks")
    for p in model.parameters():
        assert p.grad is None
        assert not hasattr(p, "grad_sample") and not hasattr(p, "summed_grad")
    nn.functional.cross_entropy(model(x), y).backward()  # plain autograd still works


def test_groupnorm_cnn_trains():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    model = CNN((1, 8, 8), 10, width=4, groups=2)
    before = flat(model)

    result = run(model, x, y, batch_size=4)

    assert result.steps == 4
    assert not torch.equal(before, flat(model))


def test_batchnorm_model_is_rejected_with_opacus_reason():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    before = flat(model)
    x, y = tiny_data()

    with pytest.raises(InvalidSettingError, match="BatchNorm"):
        run(model, x, y)
    assert torch.equal(before, flat(model))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(batch_size=30),
        dict(batch_size=0),
        dict(epochs=0),
        dict(lr=0.0),
        dict(momentum=1.0),
        dict(max_grad_norm=0.0),
        dict(noise_multiplier=-1.0),
    ],
)
def test_invalid_settings_raise(overrides):
    x, y = tiny_data(n=24)
    with pytest.raises(InvalidSettingError):
        run(tiny_model(), x, y, **overrides)


@pytest.mark.parametrize("accountant, cls", [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_calibrated_noise_meets_the_target(accountant, cls):
    q, steps, target, delta = 0.05, 200, 2.0, 1e-5

    sigma = calibrate_noise(target, delta, sample_rate=q, steps=steps, accountant=accountant)

    reference = cls()
    reference.history = [(sigma, q, steps)]
    eps = reference.get_epsilon(delta)
    assert target - 0.02 <= eps <= target


def test_calibration_with_more_steps_needs_more_noise():
    few = calibrate_noise(4.0, 1e-5, sample_rate=0.1, steps=50)
    many = calibrate_noise(4.0, 1e-5, sample_rate=0.1, steps=500)
    assert many > few


def test_impossible_budget_raises():
    with pytest.raises(InvalidSettingError):
        calibrate_noise(1e-9, 1e-5, sample_rate=1.0, steps=10_000)


def test_frozen_parameters_stay_fixed():
    x, y = tiny_data()
    model = tiny_model()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()

    run(model, x, y)

    assert torch.equal(model[0].weight, frozen)
