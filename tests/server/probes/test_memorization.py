"""The memorisation probe: refused off text, and exposure rising with repeats in a small run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.privacy.central import central_epsilon
from fedsim.run.runner import run_scenario
from fedsim.scenario import parse_scenario
from server.parts import ServerParts
from tests.conftest import make_scenario
from tests.fedsim.data.test_text import write_corpus

MEMORIZATION = {"canaries": 4, "repeats": [1, 20], "digits": 3}


def test_refused_on_images() -> None:
    scenario = make_scenario(**{"privacy.memorization": MEMORIZATION})
    with pytest.raises(ScenarioError, match="privacy.memorization.*text dataset"):
        ServerParts.build(federation_for(scenario))


def text_run(corpus: Path, out: Path, seed: int, **privacy: dict) -> dict:
    scenario = parse_scenario(
        {
            "name": "memorization",
            "seed": seed,
            "rounds": 1,
            "runtime": "inline",
            "device": "cpu",
            "data": {"dataset": "shakespeare", "partition": "natural", "num_clients": 3,
                     "path": str(corpus)},
            "model": {"name": "char_lstm", "params": {"hidden": 16, "layers": 1}},
            "clients": {"batch_size": 10, "lr": 0.5},
            "privacy": {"memorization": MEMORIZATION, **privacy},
        }
    )  # fmt: skip
    fed = federation_for(scenario)
    canaries = fed.text_canaries
    assert canaries is not None and canaries.repeats == (1, 20, 1, 20)
    for owner, (_, y) in canaries.per_client().items():  # in their owners' data, repeated
        assert len(y) == sum(
            r * len(canaries.prefix + "000")
            for r, o in zip(canaries.repeats, canaries.owners, strict=True)
            if o == owner
        )
        assert fed.data.num_examples(owner) >= len(y)
    _, summary = run_scenario(scenario, out / str(seed), show_progress=False)
    return summary


def test_exposure_rises_with_repeats_in_a_small_run(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    gaps = []
    for seed in range(2):
        summary = text_run(corpus, tmp_path, seed)
        exposure = summary["final_canary_exposure"]
        assert set(exposure) == {"1", "20"} and 0 <= summary["final_canary_extracted"] <= 1
        assert all(0 <= v <= np.log2(1000) for v in exposure.values())
        by_repeats = summary["final_canary_extracted_by_repeats"]  # two canaries per count
        assert set(by_repeats) == {"1", "20"} and all(v in (0, 0.5, 1) for v in by_repeats.values())
        assert np.mean(list(by_repeats.values())) == summary["final_canary_extracted"]
        gaps.append(exposure["20"] - exposure["1"])
    # gaps measured over seeds 0-4: 5.9, 7.6, 6.1, 6.8, 4.1 bits (repeats 20: 5.7-8.2 bits,
    # repeats 1: 0.3-1.6 bits, of log2(1000) = 10)
    assert min(gaps) > 2.0, gaps


def test_user_level_dp_fedavg_runs_on_text(tmp_path: Path) -> None:
    # a canary lives in one client, so DP-FedAvg's client-level ε is the guarantee that covers
    # all its copies: it runs on the text model, and its ε is the accountant's for one round
    # of all 3 clients (q = 1)
    central = {"noise_multiplier": 1.0, "clip": 0.5}
    summary = text_run(write_corpus(tmp_path / "corpus"), tmp_path, 0, central_dp=central)
    assert summary["privacy"]["central_dp"]["unit"] == "client"
    assert summary["final_epsilon"] == pytest.approx(central_epsilon(1.0, 1.0, 1, 1e-5))
    assert set(summary["final_canary_exposure"]) == {"1", "20"}
