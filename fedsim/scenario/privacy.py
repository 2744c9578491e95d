"""``privacy:`` blocks: local and central DP, and the probes of privacy (model → data)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from fedsim.scenario.block import StrictBlock, rounds_from_one

__all__ = [
    "AuditConfig",
    "CentralDPConfig",
    "ClassInferenceConfig",
    "InversionConfig",
    "LocalDPConfig",
    "MembershipConfig",
    "MemorizationConfig",
    "PrivacyConfig",
    "PropertyInferenceConfig",
    "PropertySpec",
]


class LocalDPConfig(StrictBlock):
    """``privacy.local_dp:`` record-level DP-SGD (Opacus) on every honest client."""

    noise_multiplier: float | None = Field(None, ge=0, le=1e6, description="σ of DP-SGD")
    target_epsilon: float | None = Field(
        None, gt=0, description="calibrate σ so a client in every round ends at this ε"
    )
    max_grad_norm: float = Field(1.0, gt=0, description="per-sample clip C")
    delta: float = Field(1e-5, gt=0, lt=1)
    accountant: Literal["rdp", "prv"] = "rdp"
    poisson_sampling: bool = True

    @model_validator(mode="after")
    def _sigma_or_target(self) -> LocalDPConfig:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier or target_epsilon")
        return self


class CentralDPConfig(StrictBlock):
    """``privacy.central_dp:`` client-level DP-FedAvg on the server (clip, sum, noise)."""

    noise_multiplier: float = Field(1.0, ge=0, le=1e6, description="z: noise std z·S on the sum")
    clip: float = Field(1.0, gt=0, description="S (the initial C₀ when adaptive)")
    delta: float = Field(1e-5, gt=0, lt=1)
    adaptive: bool = False
    target_quantile: float = Field(0.5, ge=0, le=1, description="adaptive: γ")
    clip_lr: float = Field(0.2, gt=0, description="adaptive: η_C")
    count_noise_multiplier: float | None = Field(
        None, ge=0, description="adaptive: σ_b (default max(m/20, z); must exceed z/2)"
    )
    amplification: Literal["none", "poisson"] = "none"
    accountant: Literal["rdp", "prv"] = "rdp"


class InversionConfig(StrictBlock):
    """``privacy.inversion:`` a gradient-inversion probe by a curious server or client."""

    attack: str = "idlg"
    malicious_model: Literal["none", "inconsistent"] = Field(
        "none",
        description="inconsistent: the server sends every client but a target (the first of "
        "clients sampled, else the round's first) a model whose updates vanish, so a secure "
        "sum is the target's update (Pasquini et al., CCS 2022)",
    )
    threat_model: Literal["server", "client"] = Field(
        "server",
        description="server: attack chosen clients' updates; client: attack the change of the "
        "global model (the aggregate of the others)",
    )
    rounds: list[int] = Field(default_factory=lambda: [1], min_length=1)
    clients: list[int] | None = Field(
        None, description="server threat model: clients to attack (default: every sampled)"
    )
    max_clients: int = Field(4, ge=1, description="at most this many attacked per round")
    num_images: int | None = Field(
        None, ge=1, le=64, description="images to reconstruct (default: the batch size)"
    )
    iterations: int = Field(300, ge=1, le=100_000)
    restarts: int = Field(1, ge=1, le=100)
    params: dict[str, Any] = Field(default_factory=dict, description="attack settings (lr, ...)")
    save_images: bool = True

    _positive_rounds = field_validator("rounds")(rounds_from_one)


class AuditConfig(StrictBlock):
    """``privacy.audit:`` an empirical DP audit (a probe): ε's lower bound beside the accounted ε.

    ``kind: examples`` inserts canary *examples* into honest clients' data (the record-level ε
    of local DP-SGD, or a run without DP); ``kind: clients`` inserts canary *clients* into the
    central-DP sum (the client-level ε of DP-FedAvg); ``auto`` takes ``clients`` when only
    central DP is on, else ``examples``.
    """

    canaries: int = Field(1000, ge=2, le=1_000_000, description="canary examples or clients")
    confidence: float = Field(0.95, gt=0, lt=1, description="of the lower bound")
    kind: Literal["auto", "examples", "clients"] = "auto"
    canary: Literal["mislabeled", "noise", "gradient"] = Field(
        "mislabeled",
        description="example canaries: training-pool images with a wrong label drawn at random "
        "(mislabeled) or uniform-noise images with random labels (noise); gradient: white-box "
        "Dirac canaries (a gradient of norm C on one coordinate) inserted into DP-SGD's steps, "
        "or as canary clients into DP-FedAvg's sum",
    )
    rounds: list[int] | None = Field(None, description="rounds audited (default: the last)")
    guesses: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.01, 0.0), (0.05, 0.0), (0.1, 0.0), (0.2, 0.0), (0.1, 0.1)],
        min_length=1,
        max_length=20,
        description="one-run audit grid: (k+, k-) as fractions of the canaries, fixed before "
        "the run; the bound is the best of them at Bonferroni-corrected confidence",
    )

    _positive_rounds = field_validator("rounds")(rounds_from_one)

    @field_validator("guesses")
    @classmethod
    def _fractions(cls, grid: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for k_pos, k_neg in grid:
            if not (0 <= k_pos <= 1 and 0 <= k_neg <= 1 and 0 < k_pos + k_neg <= 1):
                raise ValueError(
                    f"each (k+, k-) is a pair of fractions of the canaries with "
                    f"0 < k+ + k- <= 1, got ({k_pos}, {k_neg})"
                )
        return grid


class MembershipConfig(StrictBlock):
    """``privacy.membership:`` a membership-inference probe (see ``server.probes.membership``)."""

    attack: Literal["loss", "lira", "rmia", "gradient_norm", "update"] = Field(
        "lira",
        description="loss, lira, rmia (model outputs); gradient_norm (white-box: client or "
        "server); update: a curious server's cosine between a candidate's gradient and its "
        "client's updates (threat_model: server)",
    )
    threat_model: Literal["outsider", "client", "server"] = Field(
        "outsider",
        description="outsider: queries the last global model; client: every global model it "
        "received; server: every client's update",
    )
    level: Literal["example", "client"] = Field(
        "example", description="example: was x trained on; client: did this data set take part"
    )
    rounds: list[int] | None = Field(
        None, min_length=1, description="rounds to audit (default: the last)"
    )
    targets: int = Field(
        200, ge=2, le=100_000, description="members audited, and as many non-members"
    )
    references: int = Field(
        4, ge=1, le=256, description="reference federations trained for lira and rmia"
    )
    online: bool = Field(
        True, description="references trained on random halves containing the targets"
    )
    fix_variance: bool = Field(True, description="LiRA: one global σ (few references)")
    rmia_gamma: float = Field(1.0, gt=0)
    rmia_offline_a: float = Field(
        0.3, ge=0, le=1, description="RMIA's offline correction a (online: false)"
    )
    save_roc: bool = True

    _positive_rounds = field_validator("rounds")(rounds_from_one)


class MemorizationConfig(StrictBlock):
    """``privacy.memorization:`` secret-sharer canaries in a text federation (a probe).

    Canary ``i`` (``prefix`` + ``digits`` random digits) is inserted ``repeats[i mod k]``
    times into one honest client's text; the probe reports each repeat count's mean exposure
    (``canary_exposure``) and the share of canaries beam search extracts (``canary_extracted``).
    """

    canaries: int = Field(10, ge=1, le=1000, description="secret sequences, over all repeats")
    repeats: list[int] = Field(
        default_factory=lambda: [1, 10, 50],
        min_length=1,
        max_length=20,
        description="times a canary is repeated in its client's data (canaries cycle through)",
    )
    digits: int = Field(6, ge=1, le=12, description="random digits per secret: |R| = 10^digits")
    prefix: str = Field("my secret number is ", min_length=1, max_length=200)
    exact_limit: int = Field(
        10_000, ge=1, le=1_000_000, description="rank by enumeration when |R| is at most this"
    )
    samples: int = Field(
        1000, ge=10, le=1_000_000, description="candidates for the skew-normal fit otherwise"
    )
    beam: int = Field(10, ge=1, le=10_000, description="beam width of the extraction")
    rounds: list[int] | None = Field(None, description="rounds measured (default: the last)")

    _positive_rounds = field_validator("rounds")(rounds_from_one)

    @field_validator("repeats")
    @classmethod
    def _positive_repeats(cls, repeats: list[int]) -> list[int]:
        if min(repeats) < 1 or len(set(repeats)) != len(repeats):
            raise ValueError(f"distinct repeat counts ≥ 1, got {repeats}")
        return repeats

    @model_validator(mode="after")
    def _a_canary_per_count(self) -> MemorizationConfig:
        if self.canaries < len(self.repeats):
            raise ValueError(
                f"canaries ({self.canaries}) at least one per repeat count ({len(self.repeats)})"
            )
        return self


class PropertySpec(StrictBlock):
    """``privacy.property_inference.property:`` the property a data set holds or not.

    Exactly one of ``class`` (examples of that class) or ``feature`` (examples with a named
    image feature: ``bright``, ``contrast``; :mod:`fedsim.membership.features`).
    """

    model_config = ConfigDict(**StrictBlock.model_config, serialize_by_alias=True)

    target_class: int | None = Field(
        None, alias="class", ge=0, description="the data hold examples of this class"
    )
    feature: str | None = Field(
        None,
        description="the data hold examples with this image feature (above the training "
        "set's median): bright (mean intensity) or contrast (pixel std)",
    )
    min_fraction: float = Field(
        0.05, gt=0, le=1, description="a client holds the property when ≥ this share of its data"
    )

    @model_validator(mode="after")
    def _class_or_feature(self) -> PropertySpec:
        if (self.target_class is None) == (self.feature is None):
            raise ValueError(
                f"give exactly one of class or feature, got class={self.target_class}, "
                f"feature={self.feature}"
            )
        return self


class PropertyInferenceConfig(StrictBlock):
    """``privacy.property_inference:`` property inference from updates (Melis et al., S&P 2019)."""

    property: PropertySpec
    threat_model: Literal["server", "client"] = Field(
        "server",
        description="server: score each client's update; client: score the global model's "
        "change between rounds (the others' aggregate)",
    )
    rounds: list[int] | None = Field(None, description="rounds measured (default: every round)")
    shadow_updates: int = Field(
        10, ge=2, le=1000, description="attacker's updates per side (with / without) per round"
    )
    attacker: int | None = Field(
        None,
        ge=0,
        description="client threat model: the attacking client (default: the first client "
        "whose data hold the property and other data)",
    )

    _positive_rounds = field_validator("rounds")(rounds_from_one)


class ClassInferenceConfig(StrictBlock):
    """``privacy.class_inference:`` a client draws a class it does not hold (Hitaj et al.'s GAN).

    The attacker is one of the federation's clients; the target class is taken out of its
    data, so it never reads an example of it (see ``server.probes.class_inference``).
    """

    attack: Literal["gan"] = "gan"
    threat_model: Literal["client"] = Field(
        "client", description="client: a member that receives every global model"
    )
    target_class: int = Field(3, ge=0, description="the class to draw (the attacker lacks it)")
    mode: Literal["passive", "active"] = Field(
        "passive",
        description="passive: only a generator against each global model; active: the "
        "attacker also trains on its fakes labelled fake_label and sends that update",
    )
    attacker: int | None = Field(
        None, ge=0, description="its client id (default: fewest target-class examples, lowest id)"
    )
    fake_label: int | None = Field(
        None, ge=0, description="active: the label of its fakes (default: target_class + 1 mod K)"
    )
    fakes: int = Field(64, ge=1, le=10_000, description="active: fakes added to its data a round")
    rounds: list[int] | None = Field(None, description="rounds probed (default: the last)")
    images: int = Field(64, ge=1, le=10_000, description="k: images generated and saved a round")
    steps: int = Field(200, ge=1, le=100_000, description="generator steps per global model")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="generator settings: latent_dim, width, batch_size, lr, jitter, noise",
    )

    _positive_rounds = field_validator("rounds")(rounds_from_one)


class PrivacyConfig(StrictBlock):
    """``privacy:`` differential privacy on clients and/or server, a budget, inversion probes."""

    local_dp: LocalDPConfig | None = None
    central_dp: CentralDPConfig | None = None
    budget: float | None = Field(
        None, gt=0, description="stop before a round that would take ε above this"
    )
    inversion: InversionConfig | None = None
    audit: AuditConfig | None = None
    membership: MembershipConfig | None = None
    class_inference: ClassInferenceConfig | None = None
    memorization: MemorizationConfig | None = None
    property_inference: PropertyInferenceConfig | None = None
