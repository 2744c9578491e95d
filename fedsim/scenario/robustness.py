"""Robustness blocks: evasion attacks, the transfer attacker, adversarial training.

``robustness:`` evaluates the global model under evasion attacks (the robustness probe);
``clients.adversarial_training:`` trains honest clients on adversarial examples.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from fedsim.evasion import AdversarialTraining, build_attack
from fedsim.scenario.block import StrictBlock, rounds_from_one

__all__ = [
    "AdversarialTrainingConfig",
    "EvasionAttackConfig",
    "RobustnessConfig",
    "TransferConfig",
]


class AdversarialTrainingConfig(StrictBlock):
    """``clients.adversarial_training:`` PGD-AT, TRADES or FAT on every honest client.

    Each key is checked by :class:`fedsim.evasion.AdversarialTraining` itself (in the context of
    ``method``), so an error names ``clients.adversarial_training.<key>``.
    """

    method: Literal["pgd", "trades", "fat"] = "pgd"
    eps: float = Field(0.1, description="radius ε of the ball, in [0, 1] pixel space")
    steps: int = Field(10, description="attack iterations T")
    alpha: float | None = Field(None, description="step size (default 2.5 ε/T)")
    norm: str = "linf"
    ratio: float | None = Field(None, description="fat: share of each batch replaced")
    beta: float | None = Field(None, description="trades: the KL term's weight (default 6)")
    entropy_weight: float = Field(0.0, description="λ of the entropy (calibration) term")

    @field_validator("eps", "steps", "alpha", "norm", "ratio", "beta", "entropy_weight")
    @classmethod
    def _checked_by_core(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            AdversarialTraining(method=info.data.get("method", "pgd"), **{info.field_name: value})
        return value

    def build(self) -> AdversarialTraining:
        """The adversarial-training loss these settings define."""
        return AdversarialTraining.from_config(self.model_dump())


class EvasionAttackConfig(StrictBlock):
    """One entry of ``robustness.attacks``: a registered evasion attack and its settings."""

    model_config = ConfigDict(extra="allow", strict=False, validate_default=True)

    name: str

    @property
    def params(self) -> dict[str, Any]:
        """The attack's settings (every key but ``name``)."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _buildable(self) -> EvasionAttackConfig:
        if "surrogates" in self.params:
            raise ValueError("surrogate models come from robustness.transfer, not an attack entry")
        build_attack(self.name, **self.params)  # InvalidSettingError is a ValueError
        return self

    @property
    def label(self) -> str:
        """The attack's figure label (``pgd-linf-0.1``)."""
        return build_attack(self.name, **self.params).label


def _default_evasion_attacks() -> list[EvasionAttackConfig]:
    return [
        EvasionAttackConfig(name="fgsm", eps=0.1),
        EvasionAttackConfig(name="pgd", norm="linf", eps=0.1, steps=20),
    ]


class TransferConfig(StrictBlock):
    """``robustness.transfer:`` a black-box attacker crafting MI-FGSM examples on surrogates.

    The attacker trains ``surrogates`` (model registry names; several make an ensemble) on
    ``data`` — ``public`` (``public_samples`` held-out examples outside the evaluated subset)
    or ``client`` (the partition of client ``client``) — and crafts on them.
    """

    surrogates: list[str] = Field(default_factory=lambda: ["mlp"], min_length=1)
    data: Literal["public", "client"] = "public"
    client: int = Field(0, ge=0, description="data: client — whose partition the attacker has")
    public_samples: int = Field(500, ge=1, description="data: public — held-out examples used")
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    eps: float = Field(0.1, ge=0, le=1)
    steps: int = Field(10, ge=1, le=10_000)
    decay: float = Field(1.0, ge=0)
    norm: Literal["linf", "l2"] = "linf"


class RobustnessConfig(StrictBlock):
    """``robustness:`` evasion evaluation of the global model (the robustness probe)."""

    rounds: list[int] | None = Field(None, description="rounds evaluated (default: the last)")
    samples: int = Field(500, ge=1, description="seeded subset of the held-out set")
    attacks: list[EvasionAttackConfig] = Field(default_factory=_default_evasion_attacks)
    batch_size: int | None = Field(None, ge=1, description="samples attacked at a time")
    transfer: TransferConfig | None = None
    client_spread: int | None = Field(
        None,
        ge=1,
        description="also evaluate on each client's own data (this many samples per client) "
        "and report min / median / max robust accuracy over clients",
    )
    save_plots: bool = True

    _positive_rounds = field_validator("rounds")(rounds_from_one)

    @field_validator("attacks")
    @classmethod
    def _at_least_one(cls, attacks: list[EvasionAttackConfig]) -> list[EvasionAttackConfig]:
        # With no attack the robust accuracy would be the clean accuracy: a figure with no
        # attack behind it (the transfer attacker does not count: client_spread ignores it).
        if not attacks:
            raise ValueError(
                "at least one attack (e.g. [{name: fgsm, eps: 0.1}]), or leave attacks out "
                "for the default fgsm and pgd; with none the robust accuracy would just be the "
                "clean accuracy"
            )
        return attacks

    @field_validator("attacks")
    @classmethod
    def _distinct_labels(cls, attacks: list[EvasionAttackConfig]) -> list[EvasionAttackConfig]:
        labels = [a.label for a in attacks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"attacks need distinct labels, got {labels}; drop the duplicate")
        return attacks
