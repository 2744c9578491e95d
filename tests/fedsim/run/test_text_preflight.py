"""Preflight on text: image-only blocks are refused with the reason; the rest is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedsim.errors import ScenarioError
from fedsim.run.runner import preflight
from fedsim.scenario import parse_scenario
from tests.conftest import make_scenario
from tests.fedsim.data.test_text import write_corpus


def text_scenario(corpus: Path, **blocks: Any) -> Any:
    raw = {
        "name": "text",
        "rounds": 1,
        "runtime": "inline",
        "data": {"dataset": "shakespeare", "partition": "natural", "num_clients": 3,
                 "path": str(corpus)},
        "model": {"name": "char_lstm", "params": {"hidden": 8, "layers": 1}},
        "clients": {"batch_size": 10},
        **blocks,
    }  # fmt: skip
    return parse_scenario(raw)


@pytest.mark.parametrize(
    ("blocks", "path", "reason"),
    [
        ({"robustness": {"attacks": [{"name": "pgd", "eps": 0.1}]}}, "robustness", "pixels"),
        ({"privacy": {"inversion": {"attack": "dlg"}}}, "privacy.inversion", "images"),
        ({"attack": {"name": "backdoor", "count": 1}}, "attack.name", "pixel trigger"),
        ({"privacy": {"audit": {"canary": "noise"}}}, "privacy.audit.canary", "mislabeled"),
    ],
)
def test_image_only_blocks_are_refused_on_text(
    tmp_path: Path, blocks: dict, path: str, reason: str
) -> None:
    scenario = text_scenario(write_corpus(tmp_path), **blocks)
    with pytest.raises(ScenarioError, match=reason) as error:
        preflight(scenario)
    assert error.value.path == path


def test_membership_audit_and_label_flip_pass_on_text(tmp_path: Path) -> None:
    privacy = {"membership": {"attack": "loss", "targets": 10}, "audit": {"canaries": 10}}
    attack = {"name": "label_flip", "count": 1}
    preflight(text_scenario(write_corpus(tmp_path), privacy=privacy, attack=attack))


def test_text_backdoor_passes_on_text(tmp_path: Path) -> None:
    attack = {"name": "text_backdoor", "count": 1, "params": {"trigger": "he said "}}
    preflight(text_scenario(write_corpus(tmp_path), attack=attack))


@pytest.mark.parametrize(
    ("params", "reason"),
    [({"trigger": "x" * 80}, "windows of ≥ 86"), ({"completion": "é"}, "vocabulary")],
)
def test_text_backdoor_settings_are_checked(tmp_path: Path, params: dict, reason: str) -> None:
    attack = {"name": "text_backdoor", "count": 1, "params": params}
    with pytest.raises(ScenarioError, match=reason) as error:
        preflight(text_scenario(write_corpus(tmp_path), attack=attack))
    assert error.value.path == "attack.params"


def test_text_backdoor_is_refused_on_images() -> None:
    scenario = make_scenario(attack={"name": "text_backdoor", "count": 1})
    with pytest.raises(ScenarioError, match="needs a text dataset"):
        preflight(scenario)
