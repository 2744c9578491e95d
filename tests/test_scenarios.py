"""Every ready scenario in scenarios/ is valid, and so is every point of its sweep.

Scenarios on real datasets that are neither at ``data.path`` nor in the Hugging Face cache are
checked without their data (schema, and the model built for the dataset's known input shape),
then skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.data import VISION_DATASETS, available_offline
from fedsim.models import build_model
from fedsim.run.runner import preflight
from fedsim.run.sweep import expand_sweep
from fedsim.scenario import read_raw

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 7


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_and_every_sweep_point_pass_preflight(path: Path) -> None:
    points = expand_sweep(read_raw(path))  # validates the schema of every point
    assert points
    missing = [p.scenario.data for p in points]
    missing = [d for d in missing if not available_offline(d.dataset, d.path)]
    if missing:
        for point in points:
            spec = VISION_DATASETS.get(point.scenario.data.dataset)
            model = point.scenario.model
            if spec is not None:
                build_model(model.name, spec.input_shape, spec.num_classes, **model.params)
        data = missing[0]
        where = f"at {data.path}" if data.path else "in the Hugging Face cache"
        pytest.skip(f"{data.dataset!r} is not {where} (docs/datasets.md); schema and model checked")
    for point in points:
        preflight(point.scenario)
