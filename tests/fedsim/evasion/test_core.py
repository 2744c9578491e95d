import pytest
import torch

from fedsim.evasion.core import ascent_direction, perturb, project, uniform_ball


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_uniform_ball_stays_inside_and_fills_it(norm):
    d = uniform_ball((4000, 1, 2, 2), 0.3, norm, torch.Generator().manual_seed(0))
    flat = d.flatten(1)
    size = flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)
    assert float(size.max()) <= 0.3 + 1e-6
    # uniform in volume: P(‖δ‖ ≤ r·ε) = r^d in ℓ2 (d = 4); ℓ∞ coordinates uniform, mean |δ_i| = ε/2
    if norm == "l2":
        assert abs(float((size <= 0.5 * 0.3).float().mean()) - 0.5**4) < 0.02
    else:
        assert abs(float(flat.abs().mean()) - 0.15) < 0.005


def test_uniform_ball_is_seeded():
    a = uniform_ball((3, 4), 0.1, "l2", torch.Generator().manual_seed(5))
    b = uniform_ball((3, 4), 0.1, "l2", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_project_linf_is_the_exact_projection_on_ball_and_box():
    x = torch.tensor([[0.05, 0.5, 0.97]])
    x_adv = torch.tensor([[-0.3, 0.58, 1.4]])
    # per coordinate: clip to [max(0, x-ε), min(1, x+ε)]
    assert torch.allclose(project(x_adv, x, 0.1, "linf"), torch.tensor([[0.0, 0.58, 1.0]]))


def test_project_l2_rescales_the_clipped_perturbation():
    x = torch.tensor([[0.5, 0.5, 0.9]])
    x_adv = torch.tensor([[0.8, 0.1, 1.5]])
    delta = torch.tensor([[0.3, -0.4, 0.1]])  # after clipping to [0, 1]
    expected = x + delta * 0.2 / delta.norm()
    assert torch.allclose(project(x_adv, x, 0.2, "l2"), expected)


def test_ascent_direction_l2_has_unit_norm_and_zero_for_zero_gradient():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    out = ascent_direction(g, "l2")
    assert torch.allclose(out[0].norm(), torch.tensor(1.0))
    assert torch.equal(out[1], torch.zeros(2))


def test_perturb_runs_under_vmap_over_parameters():
    # two "clients" with different linear models attacked in one vmapped call
    w = torch.stack([torch.eye(2), -torch.eye(2)])
    x = torch.tensor([[0.5, 0.5]])
    y = torch.tensor([0])

    def attack(wi):
        def obj(o):
            return torch.nn.functional.cross_entropy(o, y, reduction="sum")

        return perturb(lambda z: z @ wi.T, obj, x, x, eps=0.1, alpha=0.1, steps=1, norm="linf")

    batched = torch.vmap(attack)(w)
    assert torch.allclose(batched[0], attack(w[0]))
    assert torch.allclose(batched[1], attack(w[1]))
    assert not torch.allclose(batched[0], batched[1])
