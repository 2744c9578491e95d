"""The :class:`Scenario` model (every block together) and its cross-field checks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from fedsim.errors import ScenarioError
from fedsim.scenario.attack_defense import AttackConfig, DefenseConfig
from fedsim.scenario.block import StrictBlock
from fedsim.scenario.clients import ClientsConfig, FaultsConfig
from fedsim.scenario.data_model import DataConfig, ModelConfig
from fedsim.scenario.privacy import PrivacyConfig
from fedsim.scenario.robustness import RobustnessConfig
from fedsim.scenario.runtime import RayConfig, VectorizedConfig
from fedsim.scenario.theft import ExtractionConfig, WatermarkConfig

__all__ = ["Scenario", "check_consistency"]


class Scenario(StrictBlock):
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


def check_consistency(s: Scenario) -> None:
    """Cross-field checks that single fields cannot express.

    The sweep's points are checked apart, by :func:`fedsim.scenario.loading.parse_scenario`
    (each point is a whole scenario to parse).
    """
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
