"""Character models: shapes, Opacus' DPLSTM against nn.LSTM, DP-SGD and the vectorized step."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator

from fedsim.errors import InvalidSettingError
from fedsim.models import build_model
from fedsim.privacy.dp_sgd import DPSettings, train_dp_sgd
from fedsim.training import TrainSettings
from fedsim.vectorized.trial import trial_step

SMALL = {"char_lstm": {"hidden": 16, "dp": True}, "char_transformer": {"width": 16, "heads": 2}}


def windows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 80, (n, 80), generator=g, dtype=torch.uint8), torch.randint(
        0, 80, (n,), generator=g
    )


@pytest.mark.parametrize("name", sorted(SMALL))
def test_logits_per_window_and_images_refused(name: str) -> None:
    model = build_model(name, (80,), 80, **SMALL[name])
    x, _ = windows(4)
    assert model(x).shape == (4, 80)
    assert torch.allclose(model(x[:1]), model(x)[:1], atol=1e-5)  # no mixing across the batch
    with pytest.raises(InvalidSettingError, match="character windows"):
        build_model(name, (1, 8, 8), 10)


def test_dplstm_computes_the_same_function_as_nn_lstm() -> None:
    torch.manual_seed(0)
    fused = build_model("char_lstm", (80,), 80, hidden=16)
    dp = build_model("char_lstm", (80,), 80, hidden=16, dp=True)
    weights = dict(fused.named_parameters())
    with torch.no_grad():  # DPLSTM names its parameters as nn.LSTM does (in another order)
        for name, p in dp.named_parameters():
            p.copy_(weights[name])
    x, _ = windows(5)
    assert torch.allclose(fused(x), dp(x), atol=1e-5)


def test_only_the_dp_lstm_passes_opacus_and_trains_under_dp_sgd() -> None:
    assert ModuleValidator.validate(build_model("char_lstm", (80,), 80, hidden=8), strict=False)
    x, y = windows(10)
    for name, params in SMALL.items():
        model = build_model(name, (80,), 80, **{**params, "layers": 1})
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        result = train_dp_sgd(
            model, x, y, TrainSettings(1, 5, lr=0.5), DPSettings(1.0),
            noise_multiplier=1.0, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert result.steps == 2 and not torch.equal(before, after)


def test_vectorized_runtime_steps_both_models() -> None:
    x, y = windows(2)
    for name, params in SMALL.items():
        model = build_model(name, (80,), 80, **{**params, "layers": 1})
        assert trial_step(model, x, y, dp=name == "char_lstm") is None
