"""The multi-agent generative attack: the ε-ball, the latent terms at δ = 0, and transfer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.data import load_dataset
from fedsim.errors import InvalidSettingError
from fedsim.evasion import GenerativeAttack, PerturbationGenerator, UniformNoise, robust_accuracy
from fedsim.evasion.generative import _penultimate, latent_distance, perturbation_diversity
from tests.fedsim.evasion.conftest import train_digits_mlp


def test_generator_output_stays_in_the_ball_and_in_pixel_range() -> None:
    torch.manual_seed(0)
    generator = PerturbationGenerator(channels=3, eps=0.05)
    for layer in generator.net:  # large weights: tanh saturates at ±1
        if isinstance(layer, nn.Conv2d):
            layer.weight.data.mul_(50)
    x = torch.rand(16, 3, 8, 8)
    x[:4], x[4:8] = 0.0, 1.0
    with torch.no_grad():
        x_adv = generator(x)
    assert float((x_adv - x).abs().max()) <= 0.05 + 1e-7
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float((x_adv - x).abs().max()) > 0.04  # it is not the identity


def test_latent_terms_are_zero_when_the_perturbation_is() -> None:
    agents = [nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))]
    x = torch.rand(8, 1, 4, 4)
    delta = PerturbationGenerator(1, eps=0.0).delta(x)
    assert torch.equal(delta, torch.zeros_like(delta))
    with _penultimate(agents) as taps:
        agents[0](x)
        agents[0](x + delta)
        adv, clean = taps[0].pop(), taps[0].pop()
    assert clean.shape == (8, 6)  # the penultimate features, not the logits
    assert latent_distance([clean], [adv]).item() == 0.0
    assert perturbation_diversity(delta).item() == 0.0
    assert latent_distance([clean], [adv + 1.0]).item() > 0.0


def test_not_fitted_or_wrong_agent_count_is_refused() -> None:
    attack = GenerativeAttack(eps=0.1, agents=2)
    with pytest.raises(InvalidSettingError, match="fit"):
        attack(nn.Flatten(), torch.rand(2, 1, 4, 4), torch.zeros(2), torch.Generator())
    with pytest.raises(InvalidSettingError, match="2 agents, got 1"):
        attack.fit([nn.Flatten()], torch.rand(2, 1, 4, 4), torch.Generator())
    with pytest.raises(InvalidSettingError, match="threat_model"):
        GenerativeAttack(eps=0.1, threat_model="server")


def test_on_digits_generative_transfer_beats_noise_at_the_same_eps() -> None:
    # Target: the digits MLP of seed s; agents: 2 MLPs of other seeds (the attacker's
    # surrogates); the generator trained on 300 training images, eps 0.15. Over seeds 0-4 the
    # target's accuracy under noise minus under the generator: 0.07, 0.16, 0.32, 0.35, 0.35.
    torch.set_num_threads(1)
    data = load_dataset("digits", seed=0, test_fraction=0.25)
    seed = 0
    target, _ = train_digits_mlp(seed=seed)
    agents = [train_digits_mlp(epochs=5, seed=10 + 3 * seed + k)[0] for k in range(2)]
    attack = GenerativeAttack(eps=0.15, agents=2, epochs=15)
    attack.fit(agents, data.x_train[:300], torch.Generator().manual_seed(seed))
    x, y = data.x_test[:300], data.y_test[:300]
    result = robust_accuracy(
        target, x, y, [UniformNoise(0.15), attack], torch.Generator().manual_seed(seed)
    )
    margin = result.per_attack["noise-linf-0.15"] - result.per_attack[attack.label]
    assert margin > 0.03, result.per_attack


def test_agents_with_nan_weights_leave_the_generator_untrained_and_in_the_ball() -> None:
    agent = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    agent[1].weight.data.fill_(float("nan"))
    x = torch.rand(8, 1, 4, 4)
    attack = GenerativeAttack(eps=0.1, agents=1, epochs=2)
    attack.fit([agent], x, torch.Generator().manual_seed(0))
    x_adv = attack(agent, x, torch.zeros(8), torch.Generator())
    assert bool(torch.isfinite(x_adv).all()) and float((x_adv - x).abs().max()) <= 0.1 + 1e-6
