"""Every registry model: one training step on every dataset's input shape, and Opacus-ready."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.validators import ModuleValidator

from fedsim.data import VISION_DATASETS
from fedsim.errors import InvalidSettingError
from fedsim.models import MODELS, build_model
from fedsim.models.lenet import LeNet5
from fedsim.models.resnet import BasicBlock, ResNet

# (channels, height, width), classes: the built-ins' shapes and every Hub dataset's
SHAPES = {"digits": ((1, 8, 8), 10), "synthetic": ((1, 8, 8), 10)} | {
    name: (spec.input_shape, spec.num_classes) for name, spec in VISION_DATASETS.items()
}
TEXT_MODELS = {
    "char_lstm",
    "char_transformer",
}  # read character windows: tests/fedsim/models/test_text.py
CASES = [
    (model, dataset)
    for model in MODELS.names()
    if model not in TEXT_MODELS
    for dataset in SHAPES
    if not (model == "lenet5" and SHAPES[dataset][0][1] < 10)
]


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(("model_name", "dataset"), CASES)
def test_one_sgd_step_on_every_dataset_shape(model_name: str, dataset: str) -> None:
    shape, classes = SHAPES[dataset]
    torch.manual_seed(0)
    model = build_model(model_name, shape, classes)
    x, y = torch.randn(4, *shape), torch.arange(4) % classes
    before = flat(model)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    optimizer.step()

    assert logits.shape == (4, classes) and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert not torch.equal(flat(model), before)


@pytest.mark.parametrize("model_name", [m for m in MODELS.names() if m not in TEXT_MODELS])
def test_every_model_passes_opacus_strict_validation(model_name: str) -> None:
    for shape, classes in {SHAPES["mnist"], SHAPES["cifar10"]}:
        model = build_model(model_name, shape, classes)
        assert ModuleValidator.validate(model, strict=True) == []


@pytest.mark.filterwarnings("ignore:Full backward hook")
@pytest.mark.parametrize(
    ("model_name", "shape"), [("lenet5", (1, 28, 28)), ("resnet", (3, 32, 32))]
)
def test_opacus_per_sample_gradients_match_one_backward_per_sample(
    model_name: str, shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    model = build_model(model_name, shape, 10)
    x, y = torch.randn(3, *shape), torch.tensor([1, 4, 7])
    reference = []
    for i in range(3):  # independent: plain autograd, one sample at a time
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1], reduction="sum").backward()
        reference.append([p.grad.clone() for p in model.parameters()])

    wrapped = GradSampleModule(model, loss_reduction="sum")
    wrapped.zero_grad()
    F.cross_entropy(wrapped(x), y, reduction="sum").backward()

    for k, p in enumerate(model.parameters()):
        for i in range(3):
            torch.testing.assert_close(p.grad_sample[i], reference[i][k], atol=1e-5, rtol=1e-4)


def test_lenet5_feature_sizes_follow_the_input() -> None:
    # 28 → conv(pad 2) 28 → pool 14 → conv 10 → pool 5;  32 → 32 → 16 → 12 → 6
    assert LeNet5((1, 28, 28), 10).classifier[0].in_features == 16 * 5 * 5
    assert LeNet5((3, 32, 32), 10).classifier[0].in_features == 16 * 6 * 6
    with pytest.raises(InvalidSettingError, match="at least 10×10, got 8×8"):
        LeNet5((1, 8, 8), 10)


@pytest.mark.parametrize("depth", [8, 14, 20])
def test_resnet_depth_counts_weighted_layers(depth: int) -> None:
    model = ResNet((3, 32, 32), 10, depth=depth)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    convs_3x3 = [
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert len(blocks) == 3 * (depth - 2) // 6
    assert len(convs_3x3) + 1 == depth  # + the linear head
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model.head.in_features == 64  # 4 × width


def test_resnet_rejects_bad_settings() -> None:
    with pytest.raises(InvalidSettingError, match="6n \\+ 2"):
        ResNet((3, 32, 32), 10, depth=10)
    with pytest.raises(InvalidSettingError, match="dividing width"):
        ResNet((3, 32, 32), 10, width=16, groups=3)
