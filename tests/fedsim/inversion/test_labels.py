import pytest
import torch

from fedsim.errors import InvalidSettingError
from fedsim.inversion import (
    build_inversion,
    last_layer_weight_grad,
    model_gradients,
    recover_label,
    recover_labels,
)

SHAPES = [(1, 8, 8), (3, 12, 12), (1, 16, 16)]


@pytest.mark.parametrize("name", ["lenet_sigmoid", "cnn", "mlp"])
def test_idlg_recovers_a_single_label_in_every_trial(name, make_model):
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        shape = SHAPES[trial % len(SHAPES)]
        classes = int(torch.randint(2, 20, (1,), generator=gen))
        model = make_model(name, shape, classes, seed=trial)
        x = torch.rand(1, *shape, generator=gen)
        y = torch.randint(0, classes, (1,), generator=gen)

        grads = model_gradients(model, x, y)

        assert recover_label(last_layer_weight_grad(model, grads, classes)) == int(y), trial


def test_idlg_attack_uses_the_recovered_label(make_model, digit):
    x, y = digit
    model = make_model("cnn", (1, 8, 8), 10, seed=1)

    rec = build_inversion("idlg", iterations=1)(
        model, model_gradients(model, x, y), input_shape=(1, 8, 8), num_classes=10
    )

    assert rec.labels.tolist() == y.tolist()


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_distinct_labels_of_a_small_batch_are_recovered(name, make_model):
    # A heuristic: exact here (near-uniform softmax at init), not in general.
    gen = torch.Generator().manual_seed(1)
    for trial in range(10):
        model = make_model(name, (1, 8, 8), 10, seed=trial)
        y = torch.randperm(10, generator=gen)[:3]
        x = torch.rand(3, 1, 8, 8, generator=gen)

        last = last_layer_weight_grad(model, model_gradients(model, x, y), 10)

        assert sorted(recover_labels(last, 3).tolist()) == sorted(y.tolist()), trial


def test_hand_computed_gradient():
    h = torch.tensor([0.3, 0.0, 1.2])
    p = torch.tensor([0.1, 0.6, 0.3])
    grad = torch.outer(p - torch.tensor([1.0, 0.0, 0.0]), h)

    assert recover_label(grad) == 0


def test_bad_inputs_raise(make_model):
    model = make_model("mlp", (1, 8, 8), 10, seed=0)
    grads = [torch.zeros_like(p) for p in model.parameters()]

    with pytest.raises(InvalidSettingError, match="num_classes"):
        recover_label(torch.zeros(10))
    with pytest.raises(InvalidSettingError, match="batch_size=11"):
        recover_labels(torch.zeros(10, 4), 11)
    with pytest.raises(InvalidSettingError, match="7 outputs"):
        last_layer_weight_grad(model, grads, 7)
