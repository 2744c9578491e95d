"""The ready privacy–utility scenario, at a small size: accuracy falls as ε falls."""

from __future__ import annotations

from pathlib import Path

from fedsim.run.sweep import expand_sweep
from fedsim.scenario import apply_overrides, read_raw
from tests.fedsim.run.test_runner import run_scenario_in_memory

SCENARIO = Path(__file__).parents[3] / "scenarios" / "privacy_utility.yaml"


def test_privacy_utility_accuracy_falls_with_epsilon_over_a_wide_sigma_range() -> None:
    raw = apply_overrides(
        read_raw(SCENARIO),
        [
            "rounds=6",
            "data.num_clients=5",
            "sweep={privacy.local_dp.noise_multiplier: [0.3, 1.0, 2.0, 30.0]}",
        ],
    )
    results = []
    for point in expand_sweep(raw):
        rows, summary = run_scenario_in_memory(point.scenario)
        assert len(rows) == 6
        results.append((summary["final_epsilon"], summary["final_accuracy"]))
    epsilons = [e for e, _ in results]
    accuracies = [a for _, a in results]
    assert epsilons == sorted(epsilons, reverse=True)  # more noise, smaller ε
    # every step up in σ costs accuracy, by more than run-to-run noise (a few points)
    for higher, lower in zip(accuracies, accuracies[1:], strict=False):
        assert higher > lower + 0.05
    assert accuracies[0] > 0.85 and accuracies[-1] < 0.3
