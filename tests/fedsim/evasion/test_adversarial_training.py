import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

import fedsim.evasion.adversarial_training as at_module
from fedsim.data import load_dataset
from fedsim.errors import InvalidSettingError
from fedsim.evasion import PGD, AdversarialTraining
from fedsim.evasion.adversarial_training import prediction_entropy


def num(t):
    return float(t.detach())


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def param_grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("method", ["pgd", "trades", "fat"])
def test_configured_settings_reach_the_attack(small_mlp, small_batch, monkeypatch, method):
    calls = []
    real = at_module.perturb

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(at_module, "perturb", spy)
    x, y = small_batch
    ratio = 0.5 if method == "fat" else None
    at = AdversarialTraining(method, eps=0.07, steps=3, alpha=0.02, ratio=ratio, norm="l2")
    at(small_mlp, x, y, gen())
    assert calls == [{"eps": 0.07, "alpha": 0.02, "steps": 3, "norm": "l2"}]


@pytest.mark.parametrize("method", ["pgd", "trades", "fat"])
def test_different_eps_or_steps_change_loss_and_gradients(small_mlp, small_batch, method):
    x, y = small_batch
    settings = [(0.05, 3), (0.2, 3), (0.2, 1)]
    losses, grads = [], []
    for eps, steps in settings:
        loss = AdversarialTraining(method, eps=eps, steps=steps, alpha=eps / 2)(
            small_mlp, x, y, gen()
        )
        losses.append(num(loss.detach()))
        grads.append(torch.cat([g.flatten() for g in param_grads(small_mlp, loss)]))
    assert len(set(losses)) == 3
    assert not torch.allclose(grads[0], grads[1]) and not torch.allclose(grads[1], grads[2])


def test_pgd_at_is_cross_entropy_on_the_pgd_attacks_examples(small_mlp, small_batch):
    x, y = small_batch
    loss = AdversarialTraining("pgd", eps=0.1, steps=4, alpha=0.03)(small_mlp, x, y, gen(3))
    x_adv = PGD(0.1, steps=4, alpha=0.03)(small_mlp, x, y, gen(3))  # same draws
    assert num(loss) == pytest.approx(num(F.cross_entropy(small_mlp(x_adv), y)), abs=1e-6)
    assert num(loss) > num(F.cross_entropy(small_mlp(x), y))


def test_fat_replaces_the_configured_share(small_mlp, small_batch):
    x, y = small_batch
    full = AdversarialTraining("fat", eps=0.1, steps=4, alpha=0.03, ratio=1.0)
    pgd = AdversarialTraining("pgd", eps=0.1, steps=4, alpha=0.03)
    assert num(full(small_mlp, x, y, gen())) == pytest.approx(num(pgd(small_mlp, x, y, gen())))
    half = AdversarialTraining("fat", eps=0.1, steps=4, alpha=0.03, ratio=0.25)
    draw = half.draw(x, gen())
    assert int(draw.replace.sum()) == 6  # round(0.25 · 24)
    x_adv = half.craft(small_mlp, x, y, draw)
    mixed = torch.where(draw.replace.view(-1, 1, 1, 1), x_adv, x)
    expected = F.cross_entropy(small_mlp(mixed), y)
    assert num(half.objective(small_mlp, x, y, x_adv, draw)) == pytest.approx(num(expected))
    clean = F.cross_entropy(small_mlp(x), y)
    assert num(clean) < num(expected) < num(pgd(small_mlp, x, y, gen()))


def test_trades_is_clean_ce_plus_beta_kl(small_mlp, small_batch):
    x, y = small_batch
    clean = num(F.cross_entropy(small_mlp(x), y))
    zero = AdversarialTraining("trades", eps=0.1, steps=3, alpha=0.03, beta=0.0)
    assert num(zero(small_mlp, x, y, gen())) == pytest.approx(clean, abs=1e-6)
    at = AdversarialTraining("trades", eps=0.1, steps=3, alpha=0.03, beta=6.0)
    draw = at.draw(x, gen())
    assert num((draw.start - x).std()) == pytest.approx(0.001, rel=0.2)  # x + 0.001·N(0, 1)
    x_adv = at.craft(small_mlp, x, y, draw)
    p, q = F.softmax(small_mlp(x), 1), F.softmax(small_mlp(x_adv), 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    assert num(at.objective(small_mlp, x, y, x_adv, draw)) == pytest.approx(
        clean + 6.0 * num(kl), abs=1e-5
    )
    # the inner maximisation raises the KL above that of the start point
    q0 = F.softmax(small_mlp(draw.start), 1)
    assert num(kl) > num((p * (p.log() - q0.log())).sum(1).mean())


def test_entropy_term_lowers_the_loss_by_lambda_times_adversarial_entropy(small_mlp, small_batch):
    x, y = small_batch
    base = AdversarialTraining("pgd", eps=0.1, steps=3, alpha=0.03)
    reg = AdversarialTraining("pgd", eps=0.1, steps=3, alpha=0.03, entropy_weight=0.5)
    draw = base.draw(x, gen())
    x_adv = base.craft(small_mlp, x, y, draw)
    h = prediction_entropy(small_mlp(x_adv)).mean()
    got = reg.objective(small_mlp, x, y, x_adv, draw)
    assert num(got) == pytest.approx(num(base.objective(small_mlp, x, y, x_adv, draw) - 0.5 * h))
    # minimising the regularised loss raises the entropy of adversarial predictions
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    only_entropy = AdversarialTraining("pgd", eps=0.1, steps=3, alpha=0.03, entropy_weight=50.0)
    h0 = num(prediction_entropy(model(x_adv)).mean())
    for _ in range(3):
        opt.zero_grad()
        only_entropy.objective(model, x, y, x_adv, draw).backward()
        opt.step()
    assert num(prediction_entropy(model(x_adv)).mean()) > h0


def test_client_call_restores_mode_and_differentiates_the_parameters(small_mlp, small_batch):
    x, y = small_batch
    small_mlp.train()
    loss = AdversarialTraining("trades", eps=0.1, steps=2)(small_mlp, x, y, gen())
    assert small_mlp.training and all(p.requires_grad for p in small_mlp.parameters())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in small_mlp.parameters())


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_vmapped_loss_gradient_over_clients_equals_the_eager_one(small_batch, method):
    # The vectorized runtime: grad of the pure loss w.r.t. each client's parameters, vmapped.
    x, y = small_batch
    at = AdversarialTraining(method, eps=0.1, steps=3, alpha=0.03)
    draw = at.draw(x, gen())
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)))
    eager = []
    for m in models:
        loss = at.loss(m, x, y, draw)
        eager.append(dict(zip(dict(m.named_parameters()), param_grads(m, loss), strict=True)))
    stacked = {
        k: torch.stack([dict(m.named_parameters())[k].detach() for m in models]) for k in eager[0]
    }
    template = models[0]

    def client_loss(params):
        return at.loss(lambda z: functional_call(template, params, (z,)), x, y, draw)

    batched = vmap(grad(client_loss))(stacked)
    for i in range(2):
        for k, g in eager[i].items():
            assert torch.allclose(batched[k][i], g, atol=1e-5), k


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "mart"}, "method in"),
        ({"method": "pgd", "ratio": 0.5}, "use method 'fat'"),
        ({"method": "trades", "ratio": 0.5}, "use method 'fat'"),
        ({"method": "fat", "ratio": 0.0}, "ratio > 0.0"),
        ({"method": "pgd", "beta": 1.0}, "has no beta"),
        ({"method": "trades", "beta": -1.0}, "beta >= 0.0"),
        ({"entropy_weight": -0.1}, "entropy_weight >= 0.0"),
        ({"eps": -0.1}, "eps >= 0.0"),
        ({"steps": 0}, "steps >= 1"),
        ({"alpha": 0.0}, "alpha > 0.0"),
        ({"norm": "l1"}, "norm in"),
    ],
)
def test_invalid_settings_are_rejected(params, message):
    with pytest.raises(InvalidSettingError, match=message):
        AdversarialTraining(**params)


def test_from_config_reads_the_scenario_block():
    block = {"method": "pgd", "eps": 0.1, "steps": 10, "alpha": 0.025, "ratio": 1.0}
    at = AdversarialTraining.from_config(block)
    assert (at.method, at.eps, at.steps, at.alpha, at.ratio) == ("pgd", 0.1, 10, 0.025, 1.0)
    with pytest.raises(InvalidSettingError, match="clients.adversarial_training"):
        AdversarialTraining.from_config({"method": "pgd", "epsilon": 0.1})


def test_pgd_at_makes_a_digits_model_more_robust(trained):
    # End to end: the loss trains. A few epochs of PGD-AT (ε = 0.1) against the plain model.
    data = load_dataset("digits", seed=0, test_fraction=0.25)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    at = AdversarialTraining("pgd", eps=0.1, steps=3, alpha=0.05)
    g = gen()
    for _ in range(5):
        for idx in torch.randperm(len(data.y_train), generator=g).split(64):
            opt.zero_grad()
            at(model, data.x_train[idx], data.y_train[idx], g).backward()
            opt.step()
    attack = PGD(0.1, steps=10)
    x, y = trained.x, trained.y
    robust = num((model(attack(model, x, y, gen())).argmax(1) == y).float().mean())
    plain = num((trained.model(attack(trained.model, x, y, gen())).argmax(1) == y).float().mean())
    assert robust > plain + 0.2
