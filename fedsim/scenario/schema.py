"""Scenario files: the typed schema, loading, ``--set`` overrides and validation.

A scenario is a YAML mapping (read by :func:`fedsim.scenario.reading.parse_yaml`: safe loading
only, no duplicate keys, no non-finite numbers, no alias bombs) validated strictly into
:class:`Scenario`. Every problem becomes a :class:`~fedsim.errors.ScenarioError` naming the key
path, the bad value and what is allowed; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import copy
import os
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fedsim.errors import ScenarioError
from fedsim.evasion import AdversarialTraining, build_attack
from fedsim.scenario.reading import parse_yaml
from fedsim.scenario.sweep_grammar import point_values, sweep_axes

__all__ = [
    "AdversarialTrainingConfig",
    "AttackConfig",
    "AuditConfig",
    "CRFLConfig",
    "CentralDPConfig",
    "ClientsConfig",
    "DataConfig",
    "DefenseConfig",
    "ExtractionConfig",
    "EvasionAttackConfig",
    "FaultsConfig",
    "FineTuneConfig",
    "MAX_CLIENTS",
    "InversionConfig",
    "LocalDPConfig",
    "MembershipConfig",
    "ModelConfig",
    "PrivacyConfig",
    "RayConfig",
    "RemovalConfig",
    "Scenario",
    "SurrogateConfig",
    "TheftTrainConfig",
    "RobustnessConfig",
    "Scenario",
    "TransferConfig",
    "VectorizedConfig",
    "WatermarkConfig",
    "apply_overrides",
    "load_scenario",
    "parse_scenario",
    "read_raw",
    "scenario_path",
    "scenario_to_dict",
    "set_dotted",
]

MAX_SCENARIO_BYTES = 1_000_000
MAX_CLIENTS = 10_000_000
"""Largest ``data.num_clients``: a cross-device population. The in-process runtimes keep
per-client objects only for sampled clients, so memory beyond the data grows with
``clients.per_round``, not with the population (Ray's engine still starts one node each)."""


def _rounds_from_one(rounds: list[int] | None) -> list[int] | None:
    """A probe's ``rounds``: null (its default) or a non-empty list of rounds numbered from 1."""
    if rounds is not None and (not rounds or any(r < 1 for r in rounds)):
        raise ValueError("rounds are numbered from 1 (a non-empty list, or null: the default)")
    return rounds


class _Strict(BaseModel):
    """Base of every block: unknown keys are errors, and values are never coerced.

    Strict mode: ``"3"``, ``3.0`` and ``true`` are not the integer 3, ``"0.1"`` is not a
    number, ``1`` is not a boolean (an integer is still accepted where a float is expected);
    non-finite numbers are refused.
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, validate_default=True
    )


class DataConfig(_Strict):
    """``data:`` which dataset, and how it is split among clients."""

    dataset: str = "digits"
    path: str | None = Field(
        None,
        min_length=1,
        description="local copy (save_to_disk dir, parquet, image folder); made absolute "
        "against the working directory",
    )
    partition: Literal["iid", "dirichlet", "shards", "natural"] = "iid"
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (smaller = more skew)")
    shards_per_client: int = Field(2, ge=1, description="classes per client for 'shards'")
    num_clients: int = Field(
        10,
        ge=1,
        le=MAX_CLIENTS,
        description="clients in the population (cross-device: millions, a few sampled a round)",
    )
    test_fraction: float = Field(0.2, gt=0, lt=1)
    params: dict[str, Any] = Field(default_factory=dict, description="dataset-specific settings")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        # Ray workers need not share the driver's working directory: resolve it once here.
        return None if path is None else os.path.abspath(os.path.expanduser(path))


class ModelConfig(_Strict):
    """``model:`` a registry name and its settings."""

    name: str = "cnn"
    params: dict[str, Any] = Field(default_factory=dict)


class AdversarialTrainingConfig(_Strict):
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


class ClientsConfig(_Strict):
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
    adversarial_training: AdversarialTrainingConfig | None = Field(
        None, description="honest clients train on adversarial examples (pgd | trades | fat)"
    )


class FaultsConfig(_Strict):
    """``faults:`` seeded client failures: dropouts, crashes, stragglers."""

    dropout: float = Field(0.0, ge=0, le=1, description="P(a sampled client never replies)")
    crash: float = Field(0.0, ge=0, le=1, description="P(a client raises while training)")
    straggler: float = Field(0.0, ge=0, le=1, description="P(a client is slow)")
    straggler_delay_s: float = Field(1.0, ge=0, le=3600, description="a straggler's delay")


class AttackConfig(_Strict):
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


class CRFLConfig(_Strict):
    """``defense.crfl:`` CRFL's server step after each round: clip the global model, add noise."""

    rho: float = Field(gt=0, description="ρ: bound on the global parameter vector's L2 norm")
    sigma: float = Field(0.01, ge=0, description="σ: std of the Gaussian noise on every weight")


class DefenseConfig(_Strict):
    """``defense:`` the aggregation rule, its settings and pre-aggregation stages."""

    aggregator: str = "fedavg"
    params: dict[str, Any] = Field(default_factory=dict)
    pre: list[str | dict[str, Any]] = Field(default_factory=list)
    server_lr: float = Field(1.0, gt=0)
    crfl: CRFLConfig | None = None


class LocalDPConfig(_Strict):
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


class CentralDPConfig(_Strict):
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


class InversionConfig(_Strict):
    """``privacy.inversion:`` a gradient-inversion probe by a curious server or client."""

    attack: str = "idlg"
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

    _positive_rounds = field_validator("rounds")(_rounds_from_one)


class AuditConfig(_Strict):
    """``privacy.audit:`` an empirical DP audit (a probe): ε's lower bound beside the accounted ε.

    ``kind: examples`` inserts canary *examples* into honest clients' data (the record-level ε
    of local DP-SGD, or a run without DP); ``kind: clients`` inserts canary *clients* into the
    central-DP sum (the client-level ε of DP-FedAvg); ``auto`` takes ``clients`` when only
    central DP is on, else ``examples``.
    """

    canaries: int = Field(1000, ge=2, le=1_000_000, description="canary examples or clients")
    confidence: float = Field(0.95, gt=0, lt=1, description="of the lower bound")
    kind: Literal["auto", "examples", "clients"] = "auto"
    canary: Literal["mislabeled", "noise"] = Field(
        "mislabeled",
        description="example canaries: training-pool images with a wrong label drawn at random "
        "(mislabeled) or uniform-noise images with random labels (noise)",
    )
    rounds: list[int] | None = Field(None, description="rounds audited (default: the last)")
    guesses: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.01, 0.0), (0.05, 0.0), (0.1, 0.0), (0.2, 0.0), (0.1, 0.1)],
        min_length=1,
        max_length=20,
        description="one-run audit grid: (k+, k-) as fractions of the canaries, fixed before "
        "the run; the bound is the best of them at Bonferroni-corrected confidence",
    )

    _positive_rounds = field_validator("rounds")(_rounds_from_one)

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


class EvasionAttackConfig(_Strict):
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


class TransferConfig(_Strict):
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


class RobustnessConfig(_Strict):
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

    _positive_rounds = field_validator("rounds")(_rounds_from_one)

    @field_validator("attacks")
    @classmethod
    def _distinct_labels(cls, attacks: list[EvasionAttackConfig]) -> list[EvasionAttackConfig]:
        labels = [a.label for a in attacks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"attacks need distinct labels, got {labels}; drop the duplicate")
        return attacks


class MembershipConfig(_Strict):
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

    _positive_rounds = field_validator("rounds")(_rounds_from_one)


class PrivacyConfig(_Strict):
    """``privacy:`` differential privacy on clients and/or server, a budget, inversion probes."""

    local_dp: LocalDPConfig | None = None
    central_dp: CentralDPConfig | None = None
    budget: float | None = Field(
        None, gt=0, description="stop before a round that would take ε above this"
    )
    inversion: InversionConfig | None = None
    audit: AuditConfig | None = None
    membership: MembershipConfig | None = None


class RayConfig(_Strict):
    """``ray:`` how the Ray runtime uses the machine or an existing cluster."""

    engine: Literal["fedsim", "flower"] = Field(
        "fedsim",
        description="fedsim: a pool of actors, each round's messages dealt to them in one call "
        "per actor; flower: Flower's simulation engine (run_simulation), one call per client",
    )
    address: str | None = Field(None, description="attach to this Ray cluster (e.g. 'auto')")
    client_cpus: float = Field(1.0, gt=0)
    client_gpus: float | None = Field(None, ge=0, le=1, description="GPU share per client")


class VectorizedConfig(_Strict):
    """``vectorized:`` how the vectorized runtime batches a round's clients."""

    chunk_size: int | None = Field(
        None,
        ge=1,
        description="clients trained together per batched chunk (default: as many as fit in "
        "half the free GPU memory; 16 on the CPU)",
    )


class SurrogateConfig(_Strict):
    """``extraction.surrogate:`` the attacker's architecture (default: the scenario's model)."""

    name: str | None = Field(None, description="a model registry name (default: model.name)")
    params: dict[str, Any] | None = Field(
        None, description="its settings (default: model.params when name is unset)"
    )


class TheftTrainConfig(_Strict):
    """The SGD a model thief trains with (the extraction surrogate, removal fine-tuning)."""

    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


class ExtractionConfig(_Strict):
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

    _positive_rounds = field_validator("rounds")(_rounds_from_one)

    @field_validator("budgets")
    @classmethod
    def _positive_budgets(cls, budgets: list[int] | None) -> list[int] | None:
        if budgets is not None and any(b < 1 for b in budgets):
            raise ValueError("query budgets are at least 1")
        return budgets


class FineTuneConfig(_Strict):
    """One fine-tuning removal attempt: its strength is ``lr`` × ``epochs``."""

    epochs: int = Field(5, ge=1, le=10_000)
    lr: float = Field(0.05, gt=0)


class RemovalConfig(_Strict):
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


class WatermarkConfig(_Strict):
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

    _positive_rounds = field_validator("rounds")(_rounds_from_one)


class Scenario(_Strict):
    """A whole scenario (the schema in DESIGN.md)."""

    name: str = Field(min_length=1, max_length=200)
    seed: int = Field(0, ge=0, lt=2**31)
    rounds: int = Field(ge=1, le=100_000)
    runtime: Literal["ray", "inline", "vectorized"] = "ray"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    clients: ClientsConfig = Field(default_factory=ClientsConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    defense: DefenseConfig = Field(default_factory=DefenseConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    vectorized: VectorizedConfig = Field(default_factory=VectorizedConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    extraction: ExtractionConfig | None = None
    watermark: WatermarkConfig | None = None
    robustness: RobustnessConfig | None = None
    checkpoint_every: int | None = Field(
        None, ge=1, description="save a checkpoint every this many rounds (for --resume)"
    )
    sweep: dict[str, Any] | None = Field(
        None, description="points to run: grid and zipped lists over dotted keys (fedsim.run.sweep)"
    )

    @model_validator(mode="after")
    def _attack_window_within_run(self) -> Scenario:
        start, stop = self.attack.start_round, self.attack.stop_round
        if stop is not None and stop < start:
            raise ScenarioError(
                "attack.stop_round", stop, f"≥ attack.start_round = {start}, or null (to the end)"
            )
        for key in ("start_round", "stop_round"):
            value = getattr(self.attack, key)
            if value is not None and value > self.rounds:
                raise ScenarioError(
                    f"attack.{key}",
                    value,
                    f"a round of the run: 1 ≤ {key} ≤ rounds = {self.rounds}",
                )
        return self

    @property
    def clients_per_round(self) -> int:
        """Clients sampled each round (``clients.per_round``, or all of them)."""
        return self.clients.per_round or self.data.num_clients

    @property
    def num_malicious(self) -> int:
        """Malicious clients in the whole federation (fixed for the run)."""
        if self.attack.name == "none":
            return 0
        if self.attack.count is not None:
            return self.attack.count
        return int(round((self.attack.fraction or 0.0) * self.data.num_clients))


def load_scenario(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file.

    Parameters
    ----------
    path : path-like
        A YAML file holding one mapping.
    overrides : list of str, optional
        ``key.path=value`` strings (values parsed as YAML), applied before validation.

    Raises
    ------
    ScenarioError
        The file cannot be read or parsed, or a value is invalid.
    """
    return parse_scenario(apply_overrides(read_raw(path), overrides or []))


APP_DIR = Path(__file__).resolve().parents[2]
"""The directory holding ``fedsim/`` (a checkout, or the app ``flwr run`` installed)."""


def scenario_path(path: str | os.PathLike[str]) -> Path:
    """Where a run config's ``scenario`` path points.

    Under ``flwr run`` the ServerApp and ClientApps run in processes started by the
    SuperLink, from its working directory, not the user's: a relative path is taken from
    the working directory if the file is there, else from :data:`APP_DIR` (the app's own
    copy, which holds ``scenarios/``).
    """
    path = Path(path).expanduser()
    if path.is_absolute() or path.is_file():
        return path
    return APP_DIR / path


def read_raw(path: str | os.PathLike[str]) -> Any:
    """Read a scenario file into plain data (size-checked, :func:`parse_yaml`), unvalidated."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError("", str(path), "no such scenario file")
    size = path.stat().st_size
    if size > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            "", f"{size} bytes", f"a scenario file is at most {MAX_SCENARIO_BYTES} bytes"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError("", str(path), f"a readable UTF-8 text file ({e})") from None
    return parse_yaml(text)


def apply_overrides(raw: Any, overrides: list[str]) -> Any:
    """Return a copy of ``raw`` with each ``key.path=value`` override set.

    Values are parsed as YAML (``rounds=5`` is an int, ``attack.params.z=1.5`` a float,
    ``sweep.seed=[0,1]`` a list), with the file's rules (no duplicate keys, no non-finite
    numbers). Missing intermediate mappings are created.

    Raises
    ------
    ScenarioError
        An item is not ``key=value``, its value is not valid YAML, or two items set the
        same key (the message names both).
    """
    if not overrides:
        return raw
    if not isinstance(raw, dict):
        return raw  # parse_scenario reports the real problem
    result = copy.deepcopy(raw)
    given: dict[str, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part.strip() for part in key.split(".")):
            raise ScenarioError("--set", item, "a key.path=value pair")
        if key in given:
            raise ScenarioError(
                key,
                None,
                "give each key once",
                problem=f"set twice (--set {given[key]} and --set {item})",
            )
        given[key] = item
        try:
            value = parse_yaml(text, f"--set {item}") if text.strip() else None
        except ScenarioError as e:
            path = f"{key}.{e.path}" if e.path else key
            raise ScenarioError(path, e.value, e.allowed, problem=e.problem) from None
        set_dotted(result, key, value)
    return result


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``key = "a.b.c"``, creating missing mappings."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ScenarioError(".".join(parts[: i + 1]), child, "a mapping, to set keys inside it")
        node = child
    node[parts[-1]] = value


def parse_scenario(raw: Any) -> Scenario:
    """Validate a raw mapping (already parsed from YAML) into a :class:`Scenario`."""
    if raw is None:
        raise ScenarioError(
            "", None, "the scenario is empty; a mapping with at least 'name' and 'rounds'"
        )
    if not isinstance(raw, dict):
        raise ScenarioError(
            "", raw, "a scenario is a YAML mapping (key: value), not a list or scalar"
        )
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as e:
        raise _to_scenario_error(e, raw) from None
    _check_consistency(scenario)
    return scenario


def _to_scenario_error(error: ValidationError, raw: dict[str, Any]) -> ScenarioError:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    path = ".".join(loc)
    message = first["msg"]
    if first["type"] == "missing":
        return ScenarioError(path, None, "this key is required")
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return ScenarioError(path, first["input"], f"unknown key; allowed keys here: {allowed}")
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
        return ScenarioError(path, _lookup(raw, loc), message)
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ScenarioError(path, first.get("input"), f"expected: {message.lower()}{suffix}")


def _allowed_keys(loc: list[str]) -> str:
    model: type[BaseModel] = Scenario
    for part in loc:
        annotation = model.model_fields[part].annotation
        blocks = [
            a
            for a in (annotation, *typing.get_args(annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not blocks:
            return "(any)"
        model = blocks[0]
    return ", ".join(model.model_fields)


def _lookup(raw: Any, loc: list[str]) -> Any:
    node = raw
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return node
        node = node[part]
    return node


def _check_consistency(s: Scenario) -> None:
    """Cross-field checks that single fields cannot express."""
    n = s.data.num_clients
    if s.clients.per_round is not None and s.clients.per_round > n:
        raise ScenarioError(
            "clients.per_round", s.clients.per_round, f"at most data.num_clients = {n}"
        )
    if s.attack.name != "none":
        if s.attack.fraction is None and s.attack.count is None:
            raise ScenarioError(
                "attack", s.attack.name, "attack.fraction or attack.count for an attack"
            )
        if s.num_malicious > n:
            key = "attack.count" if s.attack.count is not None else "attack.fraction"
            raise ScenarioError(
                key, s.num_malicious, f"at most data.num_clients = {n} malicious clients"
            )
    _check_adversarial_training(s)
    if s.sweep is not None:
        _check_sweep_points(s)


def _check_adversarial_training(s: Scenario) -> None:
    """Under local DP-SGD the adversarial loss must be a mean of per-sample terms.

    FAT's entropy term with ``ratio`` < 1 is averaged over the replaced samples only, which
    per-sample clipping cannot reproduce: that one combination is refused.
    """
    at = s.clients.adversarial_training
    if at is None or s.privacy.local_dp is None:
        return
    if at.method == "fat" and at.entropy_weight and (at.ratio or 1.0) < 1.0:
        raise ScenarioError(
            "clients.adversarial_training.entropy_weight",
            at.entropy_weight,
            "0 with privacy.local_dp and fat's ratio < 1 (the entropy term averages over the "
            "replaced samples only, not a mean of per-sample terms DP-SGD can clip)",
        )


def _check_sweep_points(s: Scenario) -> None:
    """Every point of the sweep must be a valid scenario too (the grammar: fedsim.run.sweep)."""
    base = s.model_dump(exclude_unset=True, exclude={"sweep"})  # what the file said
    for values in point_values(sweep_axes(s.sweep)):
        raw = copy.deepcopy(base)
        for key, value in values.items():
            set_dotted(raw, key, copy.deepcopy(value))
        try:
            parse_scenario(raw)
        except ScenarioError as e:
            raise ScenarioError(e.path, e.value, f"{e.allowed} (sweep point {values})") from None


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario as plain data (for ``scenario.yaml`` in a run directory)."""
    return scenario.model_dump(mode="json")
