"""Scenario files: the typed schema, loading, ``--set`` overrides and validation.

A scenario is a YAML mapping (read with ``yaml.safe_load`` only) validated into
:class:`Scenario`. Every problem becomes a :class:`~fedsim.errors.ScenarioError` naming the key
path, the bad value and what is allowed; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import copy
import os
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
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
from fedsim.sweep_grammar import point_values, sweep_axes

__all__ = [
    "AdversarialTrainingConfig",
    "AttackConfig",
    "CentralDPConfig",
    "ClientsConfig",
    "DataConfig",
    "DefenseConfig",
    "EvasionAttackConfig",
    "FaultsConfig",
    "InversionConfig",
    "LocalDPConfig",
    "ModelConfig",
    "PrivacyConfig",
    "RayConfig",
    "RobustnessConfig",
    "Scenario",
    "TransferConfig",
    "VectorizedConfig",
    "apply_overrides",
    "load_scenario",
    "parse_scenario",
    "read_raw",
    "scenario_to_dict",
    "set_dotted",
]

MAX_SCENARIO_BYTES = 1_000_000


class _Strict(BaseModel):
    """Base of every block: unknown keys are errors, values are not coerced from strings."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


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
    num_clients: int = Field(10, ge=1, le=100_000)
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

    @model_validator(mode="after")
    def _fraction_or_count(self) -> AttackConfig:
        if self.fraction is not None and self.count is not None:
            raise ValueError("give attack.fraction or attack.count, not both")
        return self


class DefenseConfig(_Strict):
    """``defense:`` the aggregation rule, its settings and pre-aggregation stages."""

    aggregator: str = "fedavg"
    params: dict[str, Any] = Field(default_factory=dict)
    pre: list[str | dict[str, Any]] = Field(default_factory=list)
    server_lr: float = Field(1.0, gt=0)


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

    @field_validator("rounds")
    @classmethod
    def _positive_rounds(cls, rounds: list[int]) -> list[int]:
        if any(r < 1 for r in rounds):
            raise ValueError("rounds are numbered from 1")
        return rounds


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

    @field_validator("rounds")
    @classmethod
    def _positive_rounds(cls, rounds: list[int] | None) -> list[int] | None:
        if rounds is not None and (not rounds or any(r < 1 for r in rounds)):
            raise ValueError("rounds are numbered from 1 (null: the last round)")
        return rounds

    @field_validator("attacks")
    @classmethod
    def _distinct_labels(cls, attacks: list[EvasionAttackConfig]) -> list[EvasionAttackConfig]:
        labels = [a.label for a in attacks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"attacks need distinct labels, got {labels}; drop the duplicate")
        return attacks


class PrivacyConfig(_Strict):
    """``privacy:`` differential privacy on clients and/or server, a budget, inversion probes."""

    local_dp: LocalDPConfig | None = None
    central_dp: CentralDPConfig | None = None
    budget: float | None = Field(
        None, gt=0, description="stop before a round that would take ε above this"
    )
    inversion: InversionConfig | None = None


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
    robustness: RobustnessConfig | None = None
    checkpoint_every: int | None = Field(
        None, ge=1, description="save a checkpoint every this many rounds (for --resume)"
    )
    sweep: dict[str, Any] | None = Field(
        None, description="points to run: grid and zipped lists over dotted keys (fedsim.run.sweep)"
    )

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


def read_raw(path: str | os.PathLike[str]) -> Any:
    """Read a scenario file into plain data (size-checked, ``yaml.safe_load``), unvalidated."""
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
        raise ScenarioError("", str(path), f"a readable UTF-8 text file ({e})") from e
    return _parse_yaml(text)


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError("", "<file>", f"invalid YAML{where}: {problem}") from e


def apply_overrides(raw: Any, overrides: list[str]) -> Any:
    """Return a copy of ``raw`` with each ``key.path=value`` override set.

    Values are parsed as YAML (``rounds=5`` is an int, ``attack.params.z=1.5`` a float,
    ``sweep.seed=[0,1]`` a list). Missing intermediate mappings are created.
    """
    if not overrides:
        return raw
    if not isinstance(raw, dict):
        return raw  # parse_scenario reports the real problem
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError("--set", item, "a key.path=value pair")
        set_dotted(result, key.strip(), _parse_yaml(text) if text.strip() else None)
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
