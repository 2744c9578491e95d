"""``attack:`` and ``defense:`` blocks: the malicious clients and the server's aggregation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from fedsim.scenario.block import StrictBlock

__all__ = ["AttackConfig", "CRFLConfig", "DefenseConfig", "SecureAggregationConfig"]


class AttackConfig(StrictBlock):
    """``attack:`` the malicious clients (``name: none`` for an honest federation)."""

    name: str = "none"
    fraction: float | None = Field(None, ge=0, le=1)
    count: int | None = Field(None, ge=0)
    knowledge: Literal["own", "full"] = "own"
    params: dict[str, Any] = Field(default_factory=dict)
    start_round: int = Field(1, ge=1, description="first round the malicious clients attack")
    stop_round: int | None = Field(
        None, ge=1, description="last round they attack (null: to the end); honest outside"
    )

    @model_validator(mode="after")
    def _fraction_or_count(self) -> AttackConfig:
        if self.fraction is not None and self.count is not None:
            raise ValueError("give attack.fraction or attack.count, not both")
        return self

    def active(self, server_round: int) -> bool:
        """Whether the malicious clients attack in ``server_round`` (the attack window).

        Examples
        --------
        >>> window = AttackConfig(name="alie", fraction=0.2, start_round=2, stop_round=3)
        >>> [window.active(r) for r in (1, 2, 3, 4)]
        [False, True, True, False]
        """
        if server_round < self.start_round:
            return False
        return self.stop_round is None or server_round <= self.stop_round


class CRFLConfig(StrictBlock):
    """``defense.crfl:`` CRFL's server step after each round: clip the global model, add noise."""

    rho: float = Field(gt=0, description="ρ: bound on the global parameter vector's L2 norm")
    sigma: float = Field(0.01, ge=0, description="σ: std of the Gaussian noise on every weight")


class SecureAggregationConfig(StrictBlock):
    """``defense.secure_aggregation:`` Flower's SecAgg+ on the run: the server learns only sums.

    Flower's names and defaults (``SecAggPlusWorkflow``). Only the types are checked here;
    the server checks the values as Flower does, and more
    (:class:`fedsim.secagg.SecAggSettings`), when it builds its parts.
    """

    protocol: Literal["secaggplus"] = "secaggplus"
    num_shares: int | float = 0.5
    reconstruction_threshold: int | float = 0.6
    clipping_range: float = 8.0
    quantization_range: int = 4194304
    modulus_range: int = 4294967296
    groups: int = Field(
        1, ge=1, description="sums revealed per round: 1 = the cohort's, k > 1 = k random groups'"
    )


class DefenseConfig(StrictBlock):
    """``defense:`` the aggregation rule, its settings and pre-aggregation stages."""

    aggregator: str = "fedavg"
    params: dict[str, Any] = Field(default_factory=dict)
    pre: list[str | dict[str, Any]] = Field(default_factory=list)
    server_lr: float = Field(1.0, gt=0)
    crfl: CRFLConfig | None = None
    secure_aggregation: SecureAggregationConfig | None = None
