import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescent
from art.estimators.classification import PyTorchClassifier
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion import MIFGSM, PGD, Ensemble


def art_classifier(model, x):
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=3,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


@pytest.mark.parametrize(
    ("norm", "art_norm", "eps", "alpha"), [("linf", np.inf, 0.1, 0.03), ("l2", 2, 0.5, 0.15)]
)
def test_pgd_without_random_start_equals_art(small_mlp, small_batch, norm, art_norm, eps, alpha):
    x, y = small_batch
    ours = PGD(eps, steps=7, alpha=alpha, norm=norm, random_start=False)(
        small_mlp, x, y, torch.Generator()
    )
    art = ProjectedGradientDescent(
        art_classifier(small_mlp, x),
        norm=art_norm,
        eps=eps,
        eps_step=alpha,
        max_iter=7,
        num_random_init=0,
        batch_size=len(x),
        verbose=False,
    ).generate(x.numpy(), y=y.numpy())
    assert np.abs(ours.numpy() - art).max() < 1e-5
    assert np.abs(ours.numpy() - x.numpy()).max() > 0.5 * min(eps, 0.1)  # it did move


def test_mifgsm_equals_art_pgd_with_momentum_decay(small_mlp, small_batch):
    x, y = small_batch
    ours = MIFGSM(0.1, steps=5, decay=1.0)(small_mlp, x, y, torch.Generator())
    art = ProjectedGradientDescent(
        art_classifier(small_mlp, x),
        norm=np.inf,
        eps=0.1,
        eps_step=0.02,
        decay=1.0,
        max_iter=5,
        num_random_init=0,
        batch_size=len(x),
        verbose=False,
    ).generate(x.numpy(), y=y.numpy())
    assert np.abs(ours.numpy() - art).max() < 1e-5


def test_mifgsm_transfer_is_crafted_on_the_surrogate_ensemble(small_mlp, small_batch):
    x, y = small_batch
    torch.manual_seed(3)
    other = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    transfer = MIFGSM(0.1, steps=4, surrogates=[small_mlp, other])
    target = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x_t = transfer(target, x, y, torch.Generator())
    direct = MIFGSM(0.1, steps=4)(Ensemble([small_mlp, other]), x, y, torch.Generator())
    assert torch.equal(x_t, direct)
    assert transfer.label == "mifgsm-linf-0.1-transfer"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_examples_stay_in_ball_and_box(trained, norm):
    eps = 0.1 if norm == "linf" else 1.0
    x, y = trained.x, trained.y
    x_adv = PGD(eps, steps=10, norm=norm, restarts=2)(trained.model, x, y, torch.Generator())
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float((trained.model(x_adv).argmax(1) == y).float().mean()) < 0.5


def test_pgd_is_seeded_and_restores_model_state(small_mlp, small_batch):
    x, y = small_batch
    small_mlp.train()
    small_mlp[1].weight.requires_grad_(False)
    attack = PGD(0.1, steps=3)
    a = attack(small_mlp, x, y, torch.Generator().manual_seed(0))
    b = attack(small_mlp, x, y, torch.Generator().manual_seed(0))
    c = attack(small_mlp, x, y, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert small_mlp.training
    assert [p.requires_grad for p in small_mlp.parameters()] == [False, True, True, True]
    assert all(p.grad is None for p in small_mlp.parameters())


def test_pgd_restarts_keep_each_samples_first_success(trained, monkeypatch):
    # Record every restart's output and check the merge rule against them.
    import fedsim.evasion.pgd as pgd_module

    outputs = []
    real = pgd_module.perturb

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        outputs.append(out)
        return out

    monkeypatch.setattr(pgd_module, "perturb", spy)
    model, x, y = trained.model, trained.x, trained.y
    final = PGD(0.08, steps=1, alpha=0.01, restarts=3)(
        model, x, y, torch.Generator().manual_seed(0)
    )
    fooled = torch.stack([model(o).argmax(1) != y for o in outputs])  # (R, n)
    assert len(outputs) == 3 and fooled.any(0).sum() > fooled[0].sum()  # later restarts add
    for i in range(len(y)):
        hits = torch.nonzero(fooled[:, i]).flatten()
        r = int(hits[0]) if len(hits) else len(outputs) - 1
        assert torch.equal(final[i], outputs[r][i])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"eps": -1.0}, "pgd needs a finite eps >= 0.0"),
        ({"eps": 0.1, "steps": 0}, "pgd needs an integer steps >= 1"),
        ({"eps": 0.1, "alpha": 0.0}, "pgd needs a finite alpha > 0.0"),
        ({"eps": 0.1, "norm": "l1"}, "pgd needs norm in"),
        ({"eps": 0.1, "restarts": 0}, "pgd needs an integer restarts >= 1"),
    ],
)
def test_pgd_rejects_bad_settings(params, message):
    with pytest.raises(InvalidSettingError, match=message):
        PGD(**params)


def test_labels():
    assert PGD(0.1).label == "pgd-linf-0.1"
    assert PGD(0.5, norm="l2").label == "pgd-l2-0.5"
    assert PGD(0.1, steps=4).alpha == pytest.approx(0.0625)
