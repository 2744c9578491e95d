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


def _linear(weight: torch.Tensor) -> nn.Module:
    """A linear classifier of (d, 1, 1) images whose logits are equal at the image 0.5."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0]))
    model[1].weight.data.copy_(weight)
    model[1].bias.data.copy_(-weight.sum(1) * 0.5)
    return model.eval()


def _known_surrogates(seed: int, d: int = 1024, sigma: float = 3.0):
    """A linear target w* and 5 agents w* + n_i whose noise the data cannot see.

    Images x = 0.5 + s·z·u, z ~ U(-1, 1), vary only along u ∝ w*₁ − w*₀; each agent's noise
    n_i ~ N(0, σ²/d) is projected off u, so every agent labels every clean image as the target
    does and the agents differ only in their gradients v_i = v* + (n_i1 − n_i0). The mean of k
    agents' gradients is v* plus noise of std σ/√k, so the ℓ∞ step ε·sign(mean v_i) that fools
    them all aligns better with v* as k grows. Images are (d, 1, 1): the generator's 3×3
    convolutions then act as dense layers and can read the class.
    """
    g = torch.Generator().manual_seed(seed)
    w_star = torch.randn(2, d, generator=g) / d**0.5
    u = w_star[1] - w_star[0]
    u = u / u.norm()
    off_u = torch.eye(d) - torch.outer(u, u)
    noise = torch.randn(5, 2, d, generator=g) * sigma / d**0.5 @ off_u

    def images(n: int) -> torch.Tensor:
        z = torch.rand(n, 1, generator=g) * 2 - 1
        return (0.5 + 0.2 * z * u / u.abs().max()).view(n, d, 1, 1)

    agents = [_linear(w_star + n) for n in noise]
    return _linear(w_star), agents, images(256), images(256)


def test_with_known_surrogates_more_agents_transfer_better() -> None:
    # Transfer success on the target (the fraction of images whose label flips) at ε = 0.08
    # for 1, 3, 5 agents (the first k of the same 5). Over seeds 0-9 the gain from 1 to 3
    # agents was 0.13-0.27 and from 3 to 5 agents 0.055-0.15 (success 0.29-0.39, 0.48-0.59,
    # 0.58-0.73), each within 0.03 of the ℓ∞ step ε·sign(mean of the k agents' gradients).
    # On digits with trained surrogates this did not hold (docs/transfer-and-task-agnostic.md).
    torch.set_num_threads(1)
    target, agents, x_train, x = _known_surrogates(seed=0)
    with torch.no_grad():
        y = target(x).argmax(1)
        assert all(torch.equal(agent(x).argmax(1), y) for agent in agents)
    success = []
    for k in (1, 3, 5):
        attack = GenerativeAttack(eps=0.08, agents=k, epochs=5, lr=1e-2)
        attack.fit(agents[:k], x_train, torch.Generator().manual_seed(0))
        with torch.no_grad():
            x_adv = attack(target, x, y, torch.Generator())
            success.append(float((target(x_adv).argmax(1) != y).float().mean()))
    assert success[1] - success[0] > 0.06, success
    assert success[2] - success[1] > 0.025, success


def test_agents_with_nan_weights_leave_the_generator_untrained_and_in_the_ball() -> None:
    agent = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    agent[1].weight.data.fill_(float("nan"))
    x = torch.rand(8, 1, 4, 4)
    attack = GenerativeAttack(eps=0.1, agents=1, epochs=2)
    attack.fit([agent], x, torch.Generator().manual_seed(0))
    x_adv = attack(agent, x, torch.zeros(8), torch.Generator())
    assert bool(torch.isfinite(x_adv).all()) and float((x_adv - x).abs().max()) <= 0.1 + 1e-6
