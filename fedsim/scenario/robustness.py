"""Robustness blocks: evasion attacks, purifier, certification, transfer, adversarial training.

``robustness:`` evaluates the global model under evasion attacks (the robustness probe), with
an optional test-time ``purifier`` (attacked non-adaptively and with BPDA + EOT) and optional
randomized-smoothing ``certify``; ``clients.adversarial_training:`` trains honest clients on
adversarial examples.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from fedsim.evasion import BPDAEOT, AdversarialTraining, EvasionAttack, FullEOT, build_attack
from fedsim.purification import PURIFIERS, Purifier, build_purifier
from fedsim.scenario.block import StrictBlock, rounds_from_one

__all__ = [
    "AdversarialTrainingConfig",
    "CertifyConfig",
    "EvasionAttackConfig",
    "PurifierConfig",
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


class PurifierConfig(StrictBlock):
    """``robustness.purifier:`` the test-time purifier P before the global model (default none).

    ``name`` is a :data:`fedsim.purification.PURIFIERS` name; ``params`` are its settings,
    checked by the purifier itself (an error names ``robustness.purifier.params``).
    """

    name: str = "none"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in PURIFIERS:
            raise ValueError(f"a purifier, one of: {', '.join(PURIFIERS.names())}")
        return name

    @field_validator("params")
    @classmethod
    def _buildable(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name is not None:
            build_purifier(name, **params)  # InvalidSettingError is a ValueError
        return params

    def build(self) -> Purifier:
        """The purifier these settings define."""
        return build_purifier(self.name, **self.params)


class EvasionAttackConfig(StrictBlock):
    """One entry of ``robustness.attacks``: a registered evasion attack and its settings.

    ``adaptive: bpda_eot`` (only with ``name: pgd`` and a purifier other than ``none``) attacks
    through the purifier with BPDA + EOT (:class:`fedsim.evasion.BPDAEOT`), ``eot`` draws per
    gradient; ``adaptive: full_eot`` backpropagates through the purifier itself, EOT-averaged
    (:class:`fedsim.evasion.FullEOT`: for a differentiable purifier such as ``diffusion``);
    ``adaptive: none`` (the default) crafts on the classifier alone. An adaptive attack first
    tries the non-adaptive PGD example, judged through the purifier, so from the same random
    starts it fools every sample the non-adaptive one fools (through a randomized purifier:
    by the attacker's own ``eot``-draw estimate, keeping per sample the candidate worst for
    the defender; ``transfer_start: true``, the default; ``false`` for pure BPDA or
    full-gradient PGD). A query-only attack
    (``{name: square, eps: 0.1, queries: 1000}``, :class:`fedsim.evasion.Square`) needs no
    ``adaptive``: with a purifier it queries f(P(x)) itself.
    """

    model_config = ConfigDict(extra="allow", strict=False, validate_default=True)

    name: str
    adaptive: Literal["none", "bpda_eot", "full_eot"] = "none"
    eot: int | None = Field(None, description="purifier draws per gradient (default 1)")
    transfer_start: bool | None = Field(
        None, description="adaptive: try the non-adaptive PGD example first (default true)"
    )

    @property
    def params(self) -> dict[str, Any]:
        """The attack's settings (all keys but name, adaptive, eot and transfer_start)."""
        return dict(self.model_extra or {})

    @field_validator("eot", mode="before")
    @classmethod
    def _eot_count(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError("eot is an integer >= 1 (purifier draws per gradient)")
        if value is not None and value < 1:
            raise ValueError("eot is an integer >= 1 (purifier draws per gradient)")
        return value

    @field_validator("transfer_start", mode="before")
    @classmethod
    def _transfer_flag(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"transfer_start is true or false, got {value!r}")
        return value

    @model_validator(mode="after")
    def _buildable(self) -> EvasionAttackConfig:
        if "surrogates" in self.params:
            raise ValueError("surrogate models come from robustness.transfer, not an attack entry")
        build_attack(self.name, **self.params)  # InvalidSettingError is a ValueError
        if self.adaptive != "none" and self.name != "pgd":
            raise ValueError(
                f"adaptive: {self.adaptive} runs PGD through the purifier, so it needs name: pgd, "
                f"got name: {self.name}"
            )
        if self.eot is not None and self.adaptive == "none":
            raise ValueError(
                "eot applies to adaptive: bpda_eot or full_eot only; drop it or set adaptive"
            )
        if self.transfer_start is not None and self.adaptive == "none":
            raise ValueError(
                "transfer_start applies to adaptive: bpda_eot or full_eot only; drop it or set "
                "adaptive"
            )
        return self

    def build(self, purifier: Purifier | None = None) -> EvasionAttack:
        """The attack; adaptive: PGD through ``purifier`` (BPDA + EOT, or full gradients + EOT)."""
        if self.adaptive != "none":
            if purifier is None:
                raise ValueError(f"adaptive: {self.adaptive} needs a purifier")
            adaptive = BPDAEOT if self.adaptive == "bpda_eot" else FullEOT
            transfer = True if self.transfer_start is None else self.transfer_start
            return adaptive(purifier, eot=self.eot or 1, transfer_start=transfer, **self.params)
        return build_attack(self.name, **self.params)

    @property
    def label(self) -> str:
        """The figure label: ``pgd-linf-0.1``, ``pgd_bpda_eot-linf-0.1``, ``pgd_full_eot-…``."""
        if self.adaptive != "none":
            return self.build(build_purifier("none")).label
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


class CertifyConfig(StrictBlock):
    """``robustness.certify:`` randomized smoothing (Cohen et al., ICML 2019) of the global model.

    CERTIFY with ``n0`` selection and ``n`` counting draws of N(0, σ²I) noise in [0, 1] pixel
    space, confidence 1 − ``alpha``, on a seeded subset of ``samples`` held-out examples;
    certified accuracy is reported at each of ``radii`` (ℓ2, pixel space). ``denoiser:
    diffusion`` certifies f∘D with D the diffusion model's one-shot denoiser at σ (denoised
    smoothing, Carlini et al., ICLR 2023).
    """

    sigma: float = Field(0.25, gt=0, description="noise level σ (ℓ2, [0, 1] pixel space)")
    n0: int = Field(100, ge=1, description="selection draws")
    n: int = Field(1000, ge=1, description="counting draws")
    alpha: float = Field(0.001, gt=0, lt=1, description="failure probability α")
    denoiser: Literal["none", "diffusion"] = Field(
        "none",
        description="denoised smoothing: diffusion denoises each noisy copy in one shot "
        "(robustness.purifier's score model when it is diffusion, else one with default "
        "settings, trained by the server on its public pool)",
    )
    radii: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0], min_length=1)
    samples: int = Field(100, ge=1, description="seeded subset of the held-out set")
    batch_size: int = Field(1000, ge=1, description="noisy copies per forward pass")

    @field_validator("radii")
    @classmethod
    def _radii(cls, radii: list[float]) -> list[float]:
        if any(r < 0 for r in radii):
            raise ValueError("radii are l2 distances >= 0, e.g. [0.25, 0.5, 1.0]")
        labels = [f"r{r:g}" for r in radii]
        if len(set(labels)) != len(labels):
            raise ValueError(f"radii need distinct labels, got {labels}; drop the duplicate")
        return radii


class RobustnessConfig(StrictBlock):
    """``robustness:`` evasion evaluation of the global model (the robustness probe)."""

    rounds: list[int] | None = Field(None, description="rounds evaluated (default: the last)")
    samples: int = Field(500, ge=1, description="seeded subset of the held-out set")
    purifier: PurifierConfig = Field(default_factory=PurifierConfig)
    attacks: list[EvasionAttackConfig] = Field(default_factory=_default_evasion_attacks)
    batch_size: int | None = Field(None, ge=1, description="samples attacked at a time")
    transfer: TransferConfig | None = None
    client_spread: int | None = Field(
        None,
        ge=1,
        description="also evaluate on each client's own data (this many samples per client) "
        "and report min / median / max robust accuracy over clients",
    )
    certify: CertifyConfig | None = None
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
    def _adaptive_needs_a_purifier(
        cls, attacks: list[EvasionAttackConfig], info: ValidationInfo
    ) -> list[EvasionAttackConfig]:
        purifier = info.data.get("purifier")
        name = "none" if purifier is None else purifier.name
        for index, attack in enumerate(attacks):
            if attack.adaptive == "full_eot" and name == "bit_depth":
                raise ValueError(
                    f"robustness.attacks.{index}.adaptive: full_eot needs a differentiable "
                    "purifier, and bit_depth's gradient is zero almost everywhere; use bpda_eot"
                )
            if attack.adaptive != "none" and name == "none":
                raise ValueError(
                    f"robustness.attacks.{index}.adaptive: {attack.adaptive} attacks through a "
                    "purifier, "
                    "but robustness.purifier is none (with none it is plain pgd); set "
                    "robustness.purifier.name to one of "
                    f"{', '.join(n for n in PURIFIERS.names() if n != 'none')}, or drop adaptive"
                )
        return attacks

    @field_validator("attacks")
    @classmethod
    def _distinct_labels(cls, attacks: list[EvasionAttackConfig]) -> list[EvasionAttackConfig]:
        labels = [a.label for a in attacks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"attacks need distinct labels, got {labels}; drop the duplicate")
        return attacks
