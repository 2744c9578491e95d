import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from fedsim.errors import InvalidSettingError
from fedsim.evasion import expected_calibration_error, plot_reliability, reliability_diagram


def test_ece_equals_a_hand_computation():
    # 15 bins (b/15, (b+1)/15]: confidences 0.97, 0.95 in bin 14 (> 0.933), 0.55 in bin 8
    # (0.533, 0.6], 0.39, 0.37 in bin 5 (0.333, 0.4].
    probs = torch.tensor(
        [
            [0.97, 0.03, 0.00],  # correct
            [0.95, 0.05, 0.00],  # wrong
            [0.25, 0.55, 0.20],  # correct
            [0.39, 0.36, 0.25],  # wrong
            [0.30, 0.33, 0.37],  # correct
        ]
    )
    y = torch.tensor([0, 1, 1, 2, 2])
    hand = (2 / 5) * abs(0.5 - 0.96) + (1 / 5) * abs(1.0 - 0.55) + (2 / 5) * abs(0.5 - 0.38)
    assert hand == pytest.approx(0.322)
    assert expected_calibration_error(probs, y) == pytest.approx(hand, abs=1e-7)
    d = reliability_diagram(probs, y)
    assert d.count[14] == 2 and d.count[8] == 1 and d.count[5] == 2 and sum(d.count) == 5
    assert d.accuracy[14] == 0.5 and d.confidence[8] == pytest.approx(0.55)
    assert d.accuracy[0] is None and len(d.edges) == 16


def test_ece_matches_torchmetrics_on_random_predictions():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 10, generator=g), dim=1)
    y = torch.randint(0, 10, (500,), generator=g)
    ref = multiclass_calibration_error(probs, y, num_classes=10, n_bins=15, norm="l1")
    assert expected_calibration_error(probs, y) == pytest.approx(float(ref), abs=1e-6)


def test_ece_is_zero_for_calibrated_bins_and_one_for_certain_mistakes():
    probs = torch.tensor([[0.5, 0.5]] * 4)
    y = torch.tensor([0, 0, 1, 1])  # argmax is 0; accuracy 0.5 at confidence 0.5
    assert expected_calibration_error(probs, y) == pytest.approx(0.0)
    assert expected_calibration_error(torch.tensor([[1.0, 0.0]]), torch.tensor([1])) == 1.0


def test_bad_shapes_and_bins_are_rejected():
    with pytest.raises(InvalidSettingError, match="n_bins >= 1"):
        reliability_diagram(torch.ones(2, 2) / 2, torch.tensor([0, 1]), n_bins=0)
    with pytest.raises(InvalidSettingError, match="shape"):
        reliability_diagram(torch.ones(2, 2) / 2, torch.tensor([0, 1, 1]))


def test_plot_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(100, 3, generator=g), dim=1)
    path = plot_reliability(
        reliability_diagram(probs, torch.randint(0, 3, (100,), generator=g)),
        tmp_path / "reliability.png",
        title="clean",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_shows_clean_and_adversarial_with_a_legend(tmp_path, monkeypatch):
    import matplotlib.axes

    legends = []
    real = matplotlib.axes.Axes.legend

    def spy(ax, *args, **kwargs):
        legend = real(ax, *args, **kwargs)
        legends.append([t.get_text() for t in legend.get_texts()])
        return legend

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", spy)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (200,), generator=g)
    clean = reliability_diagram(torch.softmax(3 * torch.randn(200, 3, generator=g), dim=1), y)
    adversarial = reliability_diagram(torch.softmax(5 * torch.randn(200, 3, generator=g), dim=1), y)
    path = plot_reliability(
        {"clean": clean, "adversarial": adversarial}, tmp_path / "reliability.png", "round 2"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (texts,) = legends
    assert texts[0] == "perfect calibration"
    assert f"clean (ECE {clean.ece:.3f}, n = 200)" in texts
    assert f"adversarial (ECE {adversarial.ece:.3f}, n = 200)" in texts
