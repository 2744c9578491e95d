"""What every process of a run derives from its scenario: data, model factory, malicious set.

Each process (the driver, each Ray actor) builds this once and caches it, so a client's
partition and its model object are not rebuilt on every round.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from fedsim.attacks import Attack, UpdateAttack, accepts, build_attack, is_attack
from fedsim.attacks.colluding import ColludingAttack
from fedsim.attacks.strength import StrengthSearch
from fedsim.audit.canaries import ExampleCanaries, example_canaries, insert_example_canaries
from fedsim.audit.gradient import GradientCanaries, gradient_canaries
from fedsim.data import FederatedData, federated_data
from fedsim.data.tasks import TaskSet, task_set
from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.inference.attacker import ClassInferenceAttacker, without_class
from fedsim.memorization import TextCanaries, scenario_text_canaries
from fedsim.models import build_model
from fedsim.models.multitask import MultiTaskModel, TaskView
from fedsim.params import flat_params
from fedsim.personalization import local_test_split
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, derive_seed, numpy_rng

__all__ = [
    "Federation",
    "build_scenario_attack",
    "class_inference_attacker",
    "federation_for",
    "federation_override",
    "malicious_clients",
    "resolve_device",
    "strength_search",
]


def resolve_device(setting: str) -> torch.device:
    """``auto`` → the GPU when one is visible, else the CPU; ``cpu``/``cuda`` as given."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def malicious_clients(scenario: Scenario) -> frozenset[int]:
    """The malicious client ids: a seeded draw, fixed for the whole run."""
    count = scenario.num_malicious
    if count == 0:
        return frozenset()
    rng = numpy_rng(scenario.seed, Stream.MALICIOUS)
    chosen = rng.choice(scenario.data.num_clients, size=count, replace=False)
    return frozenset(int(c) for c in chosen)


def build_scenario_attack(scenario: Scenario, num_classes: int) -> Attack | None:
    """The scenario's attack object (``None`` for ``attack.name: none``).

    ``num_classes`` is filled in from the dataset for attacks that take it (label flipping).
    """
    if not is_attack(scenario.attack.name):
        return None
    _, params = StrengthSearch.from_params(scenario.attack.params)
    if "num_classes" in accepts(scenario.attack.name):
        params.setdefault("num_classes", num_classes)
    return build_attack(scenario.attack.name, **params)


def strength_search(scenario: Scenario, attack: Attack | None) -> StrengthSearch | None:
    """The defence-aware strength search of ``attack.params`` (``strength: optimal``), if set.

    Raises
    ------
    InvalidSettingError
        The search settings are invalid, or the attack has no strength the server-side
        adversary can choose (see :meth:`ColludingAttack.tunable`). Update attacks with a
        ``strength_key`` are then run by the adversary stage, not on the clients.
    """
    search, _ = StrengthSearch.from_params(scenario.attack.params)
    if search is None:
        return None
    tunable = (isinstance(attack, ColludingAttack) and attack.has_strength) or (
        isinstance(attack, UpdateAttack) and attack.strength_key is not None
    )
    if not tunable:
        raise InvalidSettingError(
            f"strength: optimal needs an attack with a strength the server-side adversary can "
            f"search (alie, ipm, min_max, min_sum; sign_flip, gaussian, scaling), got "
            f"{scenario.attack.name!r}"
        )
    return search


@dataclass
class Federation:
    """A scenario's derived objects in one process.

    ``data`` already holds a privacy audit's inserted canary examples (in their owners'
    training data, :attr:`FederatedData.extra <fedsim.data.FederatedData>`); ``canaries`` is
    every canary, inserted or not, for the audit probe. ``tasks`` is a multi-task
    federation's task set (``data.tasks``; ``None`` for a single-task one): its models are
    :class:`~fedsim.models.multitask.MultiTaskModel` objects, seen by single-task code
    through the first task's view. ``text_canaries`` are ``privacy.memorization``'s secrets,
    also in their owners' data (text datasets only); ``gradient_canaries`` a white-box audit's
    canary gradients (``privacy.audit.canary: gradient``), which the owners' DP-SGD inserts.
    With ``privacy.class_inference``, ``class_inference`` is its attacker, whose partition
    has lost the target class.
    """

    scenario: Scenario
    data: FederatedData
    malicious: frozenset[int]
    device: torch.device
    attack: Attack | None = None
    canaries: ExampleCanaries | None = None
    gradient_canaries: GradientCanaries | None = None
    strength: StrengthSearch | None = None
    tasks: TaskSet | None = None
    text_canaries: TextCanaries | None = None
    class_inference: ClassInferenceAttacker | None = None
    _models: dict[str, nn.Module] = field(default_factory=dict, repr=False)

    def build_model(self) -> nn.Module:
        """A fresh model with the run's seeded initial weights, on this process' device.

        In a multi-task federation, the first task's :class:`TaskView` of a fresh
        :class:`MultiTaskModel` (its parameters are the whole multi-task model's).
        """
        model_config = self.scenario.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.scenario.seed, Stream.INIT))
            if self.tasks is None:
                model: nn.Module = build_model(
                    model_config.name,
                    self.data.dataset.input_shape,
                    self.data.dataset.num_classes,
                    **model_config.params,
                )
            else:
                classes = dict(zip(self.tasks.names, self.tasks.num_classes, strict=True))
                model = MultiTaskModel.from_registry(
                    model_config.name, self.data.dataset.input_shape, classes, **model_config.params
                ).as_single_task(self.tasks.names[0])
        return model.to(self.device)

    def multitask(self, role: str) -> MultiTaskModel | None:
        """The multi-task model behind :meth:`model` ``(role)``; ``None`` in a single-task run."""
        model = self.model(role)
        return model.multitask if isinstance(model, TaskView) else None

    def client_tasks(self, client_id: int) -> tuple[str, ...]:
        """The tasks client ``client_id`` trains (``data.task_assignment``); ``()``: no tasks."""
        if self.tasks is None:
            return ()
        return self.tasks.held_by(client_id, self.scenario.data.task_assignment)

    def model(self, role: str) -> nn.Module:
        """A model object reused across calls in this process (one per ``role``)."""
        if role not in self._models:
            self._models[role] = self.build_model()
        return self._models[role]

    def attacker_index(self, client_id: int) -> int:
        """Position of a malicious client among the run's attackers (for DBA's trigger pieces)."""
        return sorted(self.malicious).index(client_id)

    def initial_weights(self) -> torch.Tensor:
        """The seeded initial global weights as a flat float32 vector."""
        return flat_params(self.build_model())


def federation_for(scenario: Scenario) -> Federation:
    """The cached :class:`Federation` of ``scenario`` in this process.

    Inside :func:`federation_override` for that scenario, the overriding federation.
    """
    key = scenario.model_dump_json()
    return _OVERRIDES.get(key) or _federation(key)


_OVERRIDES: dict[str, Federation] = {}


@contextmanager
def federation_override(fed: Federation) -> Iterator[Federation]:
    """Make :func:`federation_for` return ``fed`` for ``fed.scenario`` inside the block.

    How a run trains on other data than its scenario's partition (membership inference's
    reference federations: a seeded inclusion mask over the training pool, held-out targets
    added to clients) without a new scenario key: the ClientApp and the ServerApp both look
    their federation up with :func:`federation_for`. It only reaches this process, so the run
    inside must use an in-process runtime (``inline`` or ``vectorized``).
    """
    key = fed.scenario.model_dump_json()
    if key in _OVERRIDES:
        raise RuntimeError("this scenario's federation is already overridden")
    _OVERRIDES[key] = fed
    try:
        yield fed
    finally:
        del _OVERRIDES[key]


@functools.lru_cache(maxsize=2)
def _federation(scenario_json: str) -> Federation:
    scenario = Scenario.model_validate_json(scenario_json)
    data = federated_data(scenario.data, scenario.seed)
    if (personal := scenario.clients.personalization) is not None:
        train, tests = local_test_split(data.partitions, personal.test_fraction, scenario.seed)
        data = replace(data, partitions=train, local_tests=tests)
    class_attacker = class_inference_attacker(scenario, data)
    if class_attacker is not None:
        data = without_class(data, class_attacker.client_id, class_attacker.gan.target_class)
    malicious = malicious_clients(scenario)
    canaries = example_canaries(scenario, data.dataset, malicious)
    attack = build_scenario_attack(scenario, data.dataset.num_classes)
    tasks = None
    if scenario.data.tasks is not None:
        dataset = data.dataset
        tasks = task_set(scenario.data.tasks, scenario.data.dataset, dataset.num_classes)
    data = insert_example_canaries(data, canaries)
    secrets = scenario_text_canaries(scenario, malicious) if data.dataset.is_text else None
    if secrets is not None:
        data = data.with_extra(secrets.merged_into(data.extra))
    fed = Federation(
        scenario=scenario,
        data=data,
        malicious=malicious,
        device=resolve_device(scenario.device),
        attack=attack,
        canaries=canaries,
        strength=strength_search(scenario, attack),
        tasks=tasks,
        text_canaries=secrets,
        class_inference=class_attacker,
    )
    audit = scenario.privacy.audit
    if audit is not None and audit.canary == "gradient":
        dim = sum(p.numel() for p in fed.model("audit").parameters())
        fed.gradient_canaries = gradient_canaries(scenario, malicious, dim)
    return fed


def class_inference_attacker(
    scenario: Scenario, data: FederatedData
) -> ClassInferenceAttacker | None:
    """The attacker ``privacy.class_inference`` asks for (``None`` without that block).

    Raises
    ------
    ScenarioError
        Naming ``privacy.class_inference`` and why its settings cannot work on this data.
    """
    config = scenario.privacy.class_inference
    if config is None:
        return None
    try:
        return ClassInferenceAttacker.from_config(config, data, scenario.seed)
    except InvalidSettingError as e:
        raise ScenarioError("privacy.class_inference", config.model_dump(), str(e)) from None
