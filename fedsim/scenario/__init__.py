"""Scenario files: the typed schema, YAML reading, ``--set`` overrides and the sweep grammar.

One home for what a scenario *is*: :mod:`fedsim.scenario.reading` reads YAML safely,
:mod:`fedsim.scenario.loading` applies overrides and validates the result into
:class:`Scenario` (:mod:`fedsim.scenario.scenario`: the whole model and its cross-field
checks), and :mod:`fedsim.scenario.sweep_grammar` expands a ``sweep:`` block into points.
The blocks live by concern, each a strict model (:mod:`fedsim.scenario.block`):
:mod:`~fedsim.scenario.data_model` (``data``, ``model``), :mod:`~fedsim.scenario.clients`
(``clients``, ``faults``), :mod:`~fedsim.scenario.attack_defense` (``attack``, ``defense``),
:mod:`~fedsim.scenario.privacy` (local and central DP, inversion, audit, membership),
:mod:`~fedsim.scenario.robustness` (evasion attacks, transfer, adversarial training),
:mod:`~fedsim.scenario.theft` (extraction, watermark, removal) and
:mod:`~fedsim.scenario.runtime` (``ray``, ``vectorized``).
"""

from fedsim.scenario.attack_defense import (
    AttackConfig,
    CRFLConfig,
    DefenseConfig,
    SecureAggregationConfig,
)
from fedsim.scenario.clients import ClientsConfig, FaultsConfig, PersonalizationConfig
from fedsim.scenario.data_model import MAX_CLIENTS, DataConfig, ModelConfig
from fedsim.scenario.loading import (
    apply_overrides,
    load_scenario,
    parse_scenario,
    read_raw,
    scenario_path,
    scenario_to_dict,
    set_dotted,
)
from fedsim.scenario.privacy import (
    AuditConfig,
    CentralDPConfig,
    ClassInferenceConfig,
    InversionConfig,
    LocalDPConfig,
    MembershipConfig,
    MemorizationConfig,
    PrivacyConfig,
)
from fedsim.scenario.robustness import (
    AdversarialTrainingConfig,
    EvasionAttackConfig,
    RobustnessConfig,
    TransferConfig,
)
from fedsim.scenario.runtime import RayConfig, VectorizedConfig
from fedsim.scenario.scenario import Scenario
from fedsim.scenario.theft import (
    ExtractionConfig,
    FineTuneConfig,
    RemovalConfig,
    SurrogateConfig,
    TheftTrainConfig,
    WatermarkConfig,
)

__all__ = [
    "AdversarialTrainingConfig",
    "AttackConfig",
    "AuditConfig",
    "CRFLConfig",
    "CentralDPConfig",
    "ClassInferenceConfig",
    "ClientsConfig",
    "DataConfig",
    "DefenseConfig",
    "EvasionAttackConfig",
    "ExtractionConfig",
    "FaultsConfig",
    "FineTuneConfig",
    "InversionConfig",
    "LocalDPConfig",
    "MAX_CLIENTS",
    "MembershipConfig",
    "MemorizationConfig",
    "ModelConfig",
    "PersonalizationConfig",
    "PrivacyConfig",
    "RayConfig",
    "RemovalConfig",
    "RobustnessConfig",
    "Scenario",
    "SecureAggregationConfig",
    "SurrogateConfig",
    "TheftTrainConfig",
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
