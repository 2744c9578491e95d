"""``attack:`` and ``defense:`` blocks: the malicious clients and the server's aggregation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fedsim.scenario.block import StrictBlock, rounds_from_one

__all__ = [
    "AttackConfig",
    "CRFLCertifyConfig",
    "CRFLConfig",
    "DefenseConfig",
    "SecureAggregationConfig",
]


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


class CRFLCertifyConfig(StrictBlock):
    """``defense.crfl.certify:`` CRFL's certified prediction on the final global model.

    Parameter smoothing (:class:`fedsim.certify.ParameterSmoothing`): ``models`` noisy copies
    of the clipped global model with noise std ``sigma_test`` (default ``defense.crfl.sigma``)
    vote on a seeded subset of ``samples`` held-out examples; each vote's Clopper–Pearson
    bound at ``alpha`` gives a certified trigger norm (:func:`fedsim.certify.crfl_radius`).
    Constants the theorem needs and the run does not fix: ``lipschitz`` (L_Z, the authors'
    √17), and, when the attack is not a backdoor, ``poison_fraction`` (q_B/n_B) and ``scale``
    (γ); the attack's own ``poison_fraction`` and ``boost`` are used when it has them.
    """

    sigma_test: float | None = Field(None, gt=0, description="σ_T (default: defense.crfl.sigma)")
    models: int = Field(100, ge=1, description="M noisy copies of the global model")
    alpha: float = Field(0.001, gt=0, lt=1, description="failure probability α")
    samples: int = Field(100, ge=1, description="seeded subset of the held-out set")
    radii: list[float] = Field(
        default_factory=lambda: [0.0, 0.01, 0.02, 0.05, 0.1],
        min_length=1,
        description="trigger norms ‖δ‖₂ (model input space) reported",
    )
    attackers: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4],
        min_length=1,
        description="attacker counts R of the certified-accuracy-vs-attackers figure",
    )
    lipschitz: float = Field(17**0.5, gt=0, description="L_Z of the loss gradient in the input")
    poison_fraction: float | None = Field(None, gt=0, le=1, description="q_B/n_B (default 0.5)")
    scale: float | None = Field(None, gt=0, description="γ, the attackers' boost (default 1)")
    rounds: list[int] | None = Field(None, description="rounds certified (default: the last)")

    _positive_rounds = field_validator("rounds")(rounds_from_one)

    @field_validator("radii")
    @classmethod
    def _radii(cls, radii: list[float]) -> list[float]:
        if any(not r >= 0 for r in radii):
            raise ValueError("radii are trigger norms >= 0, e.g. [0.0, 0.05, 0.1]")
        labels = [f"r{r:g}" for r in radii]
        if len(set(labels)) != len(labels):
            raise ValueError(f"radii need distinct labels, got {labels}; drop the duplicate")
        return radii

    @field_validator("attackers")
    @classmethod
    def _attackers(cls, attackers: list[int]) -> list[int]:
        if any(r < 1 for r in attackers) or len(set(attackers)) != len(attackers):
            raise ValueError("attackers are distinct counts >= 1, e.g. [1, 2, 3, 4]")
        return attackers


class CRFLConfig(StrictBlock):
    """``defense.crfl:`` CRFL's server step after each round: clip the global model, add noise.

    ``certify`` (on by default; ``certify: null`` turns it off) certifies the final model's
    predictions against backdoors (the ``crfl`` probe).
    """

    rho: float = Field(gt=0, description="ρ: bound on the global parameter vector's L2 norm")
    sigma: float = Field(0.01, ge=0, description="σ: std of the Gaussian noise on every weight")
    certify: CRFLCertifyConfig | None = Field(default_factory=CRFLCertifyConfig)


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
