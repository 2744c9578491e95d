from __future__ import annotations

from server.app import LAST_MEASURED, _summarise
from tests.conftest import make_scenario


def test_a_figure_measured_in_some_rounds_is_summarised_as_its_last_measured_value() -> None:
    history = [
        {"round": 1, "accuracy": 0.5, "loss": 1.0, "time_s": 1.0, "inversion_recovered": 0.25},
        {"round": 2, "accuracy": 0.6, "loss": 0.9, "time_s": 1.0, "property_auc": None},
        {"round": 3, "accuracy": 0.7, "loss": 0.8, "time_s": 1.0, "canary_exposure": {"1": 2.0}},
    ]
    summary = _summarise(make_scenario(rounds=3), history, wall_s=3.0)
    assert summary["final_inversion_recovered"] == 0.25  # measured in round 1 only
    assert summary["final_canary_exposure"] == {"1": 2.0}
    assert "final_property_auc" not in summary  # never measured (None): no figure
    assert "final_model_inconsistency_detected" not in summary
    assert {"inversion_recovered", "model_inconsistency_detected", "property_auc"} <= set(
        LAST_MEASURED
    )
