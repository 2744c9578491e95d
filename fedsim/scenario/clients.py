"""``clients:`` and ``faults:`` blocks: sampling, local training and seeded client failures."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedsim.scenario.block import StrictBlock
from fedsim.scenario.robustness import AdversarialTrainingConfig

__all__ = ["ClientsConfig", "FaultsConfig", "PersonalizationConfig"]


class PersonalizationConfig(StrictBlock):
    """``clients.personalization:`` personalized FL: per-client heads (fedper, fedrep) or models.

    Each client keeps its personal part in its node state between rounds and is evaluated on
    its own test split (``test_fraction`` of its data, never trained on); see
    :mod:`fedsim.personalization`.
    """

    method: Literal["fedper", "fedrep", "ditto"] = "fedper"
    head_epochs: int = Field(
        1, ge=1, le=1000, description="fedrep: epochs on the head with the body frozen, first"
    )
    lam: float = Field(
        0.1, ge=0, description="ditto: λ, the pull (λ/2)·||v − w||² of the personal model v to w"
    )
    personal_epochs: int | None = Field(
        None, ge=1, le=1000, description="ditto: epochs on v (default clients.local_epochs)"
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of each client's data held out as its own test split"
    )


class ClientsConfig(StrictBlock):
    """``clients:`` per-round sampling and the local training procedure."""

    per_round: int | None = Field(
        None, ge=1, description="clients sampled per round (all if unset)"
    )
    local_epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    timeout_s: float | None = Field(
        None, gt=0, description="round timeout: aggregate the replies that arrived by then"
    )
    verify_model: bool = Field(
        False,
        description="under defense.secure_aggregation, nodes compare the hash of the model "
        "they were sent during key agreement and abort the round when it differs",
    )
    adversarial_training: AdversarialTrainingConfig | None = Field(
        None, description="honest clients train on adversarial examples (pgd | trades | fat)"
    )
    personalization: PersonalizationConfig | None = Field(
        None, description="personalized FL: fedper | fedrep | ditto (per-client heads / models)"
    )


class FaultsConfig(StrictBlock):
    """``faults:`` seeded client failures: dropouts, crashes, stragglers."""

    dropout: float = Field(0.0, ge=0, le=1, description="P(a sampled client never replies)")
    crash: float = Field(0.0, ge=0, le=1, description="P(a client raises while training)")
    straggler: float = Field(0.0, ge=0, le=1, description="P(a client is slow)")
    straggler_delay_s: float = Field(1.0, ge=0, le=3600, description="a straggler's delay")
