import math

import pytest
import torch

from fedsim.errors import InvalidSettingError, UnknownNameError
from fedsim.inversion import INVERSION_ATTACKS, build_inversion, model_gradients, psnr
from fedsim.inversion.inverting_gradients import cosine_distance, total_variation

SHAPE = (1, 8, 8)


def attack(name, model, grads, **kwargs):
    settings = {
        k: kwargs.pop(k) for k in list(kwargs) if k not in {"label", "batch_size", "data_range"}
    }
    return build_inversion(name, **settings)(
        model, grads, input_shape=SHAPE, num_classes=10, **kwargs
    )


def initial_dummy(seed=0):
    """The first dummy input an attack draws: N(0, I) from a generator seeded with ``seed``."""
    return torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(seed)).clamp(0, 1)


@pytest.fixture
def sigmoid_net(make_model):
    return make_model("lenet_sigmoid", SHAPE, 10, seed=0)


def test_dlg_reconstructs_a_digit_and_gaussian_noise_defeats_it(sigmoid_net, digit):
    x, y = digit
    grads = model_gradients(sigmoid_net, x, y)
    scale = torch.cat([g.flatten() for g in grads]).pow(2).mean().sqrt()
    gen = torch.Generator().manual_seed(1)
    noisy = [g + scale * torch.randn(g.shape, generator=gen) for g in grads]

    clean = attack("dlg", sigmoid_net, grads, iterations=100)
    defended = attack("dlg", sigmoid_net, noisy, iterations=100)

    clean_psnr, noisy_psnr = psnr(clean.x, x), psnr(defended.x, x)
    print(f"DLG PSNR clean {clean_psnr:.1f} dB, noise std {float(scale):.3g}: {noisy_psnr:.1f} dB")
    assert clean_psnr >= 30
    assert clean.labels.tolist() == y.tolist()
    assert clean.grad_loss < 1e-6
    assert clean_psnr - noisy_psnr >= 10


@pytest.mark.parametrize(
    ("name", "settings"),
    [("idlg", {"iterations": 30}), ("inverting_gradients", {"iterations": 100})],
)
def test_attack_improves_on_its_random_start(name, settings, sigmoid_net, digit):
    x, y = digit

    rec = attack(name, sigmoid_net, model_gradients(sigmoid_net, x, y), **settings)

    assert psnr(rec.x, x) > psnr(initial_dummy(), x) + 10
    assert rec.labels.tolist() == y.tolist()


def test_inverting_gradients_iterates_stay_in_the_box(sigmoid_net, digit):
    x, y = digit
    ig = build_inversion("inverting_gradients", iterations=20, lr=0.5, lr_decay=False)
    params = list(sigmoid_net.parameters())
    targets = model_gradients(sigmoid_net, x, y)
    x0 = 3 * torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(0))

    best, soft = ig.optimise(sigmoid_net, params, targets, x0, torch.zeros(1, 10), y, (0.2, 0.7))

    assert best.min() >= 0.2 and best.max() <= 0.7
    assert soft.argmax(dim=1).tolist() == y.tolist()


@pytest.mark.parametrize("name", ["dlg", "idlg", "inverting_gradients"])
def test_same_seed_same_reconstruction_and_model_untouched(name, make_model, digit):
    x, y = digit
    model = make_model("lenet_sigmoid", SHAPE, 10, seed=2)
    model.requires_grad_(False)
    before = [p.detach().clone() for p in model.parameters()]
    grads = model_gradients(model, x, y)

    a = attack(name, model, grads, iterations=5, seed=7, data_range=(-1.0, 1.0))
    b = attack(name, model, grads, iterations=5, seed=7, data_range=(-1.0, 1.0))
    c = attack(name, model, grads, iterations=5, seed=8, data_range=(-1.0, 1.0))

    assert torch.equal(a.x, b.x) and a.grad_loss == b.grad_loss
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (1, *SHAPE) and a.labels.dtype == torch.int64
    assert a.x.min() >= -1 and a.x.max() <= 1
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_restarts_keep_the_best(sigmoid_net, digit):
    x, y = digit
    grads = model_gradients(sigmoid_net, x, y)

    one = attack("idlg", sigmoid_net, grads, iterations=3, restarts=1)
    three = attack("idlg", sigmoid_net, grads, iterations=3, restarts=3)

    assert three.grad_loss <= one.grad_loss


def test_known_labels_and_batches(sigmoid_net):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, *SHAPE, generator=gen)
    y = torch.tensor([4, 4])
    grads = model_gradients(sigmoid_net, x, y)

    for name in ["dlg", "idlg", "inverting_gradients"]:
        rec = attack(name, sigmoid_net, grads, iterations=3, batch_size=2, label=y)
        assert rec.x.shape == (2, *SHAPE)
        assert rec.labels.tolist() == [4, 4]
    learnt = attack("dlg", sigmoid_net, grads, iterations=3, batch_size=2)
    assert learnt.labels.shape == (2,)


def test_cosine_and_tv_hand_values():
    g = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]

    assert float(cosine_distance(g, g)) == pytest.approx(0.0, abs=1e-7)
    assert float(cosine_distance(g, [-t for t in g])) == pytest.approx(2.0)
    image = torch.tensor([[[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]])
    assert float(total_variation(image)) == pytest.approx(1.0)  # 4 of 4 |dx| = 1, dy = 0


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("dlg", {"iterations": 0}, "dlg needs an integer iterations >= 1, got 0"),
        ("dlg", {"restarts": True}, "restarts"),
        ("idlg", {"lr": -1.0}, "idlg needs a finite lr > 0, got -1.0"),
        ("idlg", {"history_size": 0}, "history_size"),
        ("inverting_gradients", {"tv_weight": -0.1}, "tv_weight >= 0, got -0.1"),
        ("inverting_gradients", {"lr": math.nan}, "lr"),
        ("inverting_gradients", {"seed": -1}, "seed"),
        ("inverting_gradients", {"lr_decay": "yes"}, "lr_decay"),
        ("dlg", {"tv_weight": 0.1}, "dlg has no parameter 'tv_weight'"),
    ],
)
def test_invalid_settings_name_attack_and_value(name, settings, message):
    with pytest.raises(InvalidSettingError, match=message):
        build_inversion(name, **settings)


def test_registry_and_unknown_name():
    names = ["dlg", "fedavg_inversion", "idlg", "imprint", "inverting_gradients", "trap_weights"]
    assert INVERSION_ATTACKS.names() == names
    with pytest.raises(UnknownNameError, match="known: " + ", ".join(names)):
        build_inversion("gradinversion")


def test_bad_call_arguments_raise(sigmoid_net, digit):
    x, y = digit
    grads = model_gradients(sigmoid_net, x, y)
    dlg = build_inversion("dlg", iterations=1)

    with pytest.raises(InvalidSettingError, match="one target gradient per model parameter"):
        dlg(sigmoid_net, grads[:-1], input_shape=SHAPE, num_classes=10)
    with pytest.raises(InvalidSettingError, match="target gradient 0 has shape"):
        dlg(sigmoid_net, [grads[0].flatten(), *grads[1:]], input_shape=SHAPE, num_classes=10)
    with pytest.raises(InvalidSettingError, match=r"1 labels in \[0, 10\), got \[12\]"):
        dlg(sigmoid_net, grads, input_shape=SHAPE, num_classes=10, label=torch.tensor([12]))
    with pytest.raises(InvalidSettingError, match="data_range"):
        dlg(sigmoid_net, grads, input_shape=SHAPE, num_classes=10, data_range=(1.0, 0.0))
    with pytest.raises(InvalidSettingError, match="input_shape"):
        dlg(sigmoid_net, grads, input_shape=(8, 8), num_classes=10)
    with pytest.raises(InvalidSettingError, match="NaN"):
        dlg(sigmoid_net, [g * math.nan for g in grads], input_shape=SHAPE, num_classes=10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_models_device(make_model, digit):
    x, y = digit
    model = make_model("lenet_sigmoid", SHAPE, 10, seed=0).cuda()
    grads = model_gradients(model, x, y)

    rec = attack("idlg", model, grads, iterations=30)

    assert grads[0].is_cuda and rec.x.device.type == "cpu"
    assert psnr(rec.x, x) >= 30
