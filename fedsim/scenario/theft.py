"""Model-theft blocks: extraction through the prediction API, and the owner's watermark.

``extraction:`` is a thief querying the global model (a probe); ``watermark:`` is WAFFLE
embedded by the server, with the thief's removal attempts on a leaked copy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from fedsim.scenario.block import StrictBlock, rounds_from_one

__all__ = [
    "ExtractionConfig",
    "FineTuneConfig",
    "RemovalConfig",
    "SurrogateConfig",
    "TheftTrainConfig",
    "WatermarkConfig",
]


class SurrogateConfig(StrictBlock):
    """``extraction.surrogate:`` the attacker's architecture (default: the scenario's model)."""

    name: str | None = Field(None, description="a model registry name (default: model.name)")
    params: dict[str, Any] | None = Field(
        None, description="its settings (default: model.params when name is unset)"
    )


class TheftTrainConfig(StrictBlock):
    """The SGD a model thief trains with (the extraction surrogate, removal fine-tuning)."""

    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


class ExtractionConfig(StrictBlock):
    """``extraction:`` model extraction through the global model's prediction API (a probe)."""

    attack: Literal["knockoff", "copycat"] = "knockoff"
    queries: int = Field(2000, ge=1, le=10_000_000, description="the query budget")
    answers: Literal["probabilities", "top1", "rounded"] = "probabilities"
    decimals: int = Field(2, ge=0, le=10, description="rounded answers: decimals kept")
    data: Literal["public", "noise", "permuted"] = Field(
        "public",
        description="the attacker's query pool: public = a seeded part of the held-out set "
        "(disjoint from every client's data and from the evaluation part); permuted = those "
        "images with one fixed pixel permutation; noise = uniform noise in the data range",
    )
    public_fraction: float = Field(
        0.5, gt=0, lt=1, description="share of the held-out set the attacker holds"
    )
    shift: int = Field(1, ge=0, le=8, description="pixels re-used pool images are shifted by")
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    train: TheftTrainConfig = Field(default_factory=TheftTrainConfig)
    rounds: list[int] | None = Field(None, min_length=1, description="default: the last round")
    budgets: list[int] | None = Field(
        None, min_length=1, description="query budgets of a fidelity/accuracy curve"
    )

    _positive_rounds = field_validator("rounds")(rounds_from_one)

    @field_validator("budgets")
    @classmethod
    def _positive_budgets(cls, budgets: list[int] | None) -> list[int] | None:
        if budgets is not None and any(b < 1 for b in budgets):
            raise ValueError("query budgets are at least 1")
        return budgets


class FineTuneConfig(StrictBlock):
    """One fine-tuning removal attempt: its strength is ``lr`` × ``epochs``."""

    epochs: int = Field(5, ge=1, le=10_000)
    lr: float = Field(0.05, gt=0)


class RemovalConfig(StrictBlock):
    """``watermark.removal:`` the thief's removal attempts on a leaked copy (last round)."""

    fine_tune: list[FineTuneConfig] = Field(default_factory=list)
    prune: list[float] = Field(default_factory=list, description="fractions of weights zeroed")
    batch_size: int = Field(32, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    public_fraction: float = Field(
        0.5, gt=0, lt=1, description="share of the held-out set the thief holds (labelled)"
    )
    tolerance: float = Field(0.05, ge=0, le=1, description="clean-accuracy drop the thief accepts")
    verify_threshold: float = Field(
        0.5, gt=0, le=1, description="trigger accuracy at which the owner claims the model"
    )

    @field_validator("prune")
    @classmethod
    def _fractions(cls, prune: list[float]) -> list[float]:
        if any(not 0 <= q <= 1 for q in prune):
            raise ValueError("pruning fractions are in [0, 1]")
        return prune


class WatermarkConfig(StrictBlock):
    """``watermark:`` WAFFLE embedding by the server after each aggregation, and its probe."""

    method: Literal["waffle"] = "waffle"
    trigger_set: int = Field(100, ge=1, le=100_000, description="number of trigger images")
    noise: float = Field(0.1, ge=0, description="triggers' Gaussian noise (share of the range)")
    embed: bool = Field(True, description="false: measure the triggers without embedding")
    threshold: float = Field(0.98, gt=0, le=1, description="retrain until this trigger accuracy")
    max_steps: int = Field(100, ge=1, le=1_000_000, description="retraining steps per round")
    batch_size: int = Field(50, ge=1)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    rounds: list[int] | None = Field(None, min_length=1, description="default: every round")
    removal: RemovalConfig | None = None

    _positive_rounds = field_validator("rounds")(rounds_from_one)
