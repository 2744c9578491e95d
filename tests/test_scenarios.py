"""Every ready scenario in scenarios/ is valid, and so is every point of its sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.config import read_raw
from fedsim.runner import preflight
from fedsim.sweep import expand_sweep

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 7


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_and_every_sweep_point_pass_preflight(path: Path) -> None:
    points = expand_sweep(read_raw(path))
    assert points
    for point in points:
        preflight(point.scenario)
