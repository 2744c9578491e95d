"""The robustness probe's attackers that train: transfer surrogates, generators, embeddings.

One home for everything an evasion attacker builds before it attacks, so the probe
(:mod:`server.probes.robustness`) only evaluates:

- the **outside attacker's surrogates** (``robustness.transfer.surrogates``, default ``mlp``),
  trained once each on the attacker's data and kept, shared by MI-FGSM's ensemble and the
  ``generative`` attack's ``outsider`` agents (surrogate i is the same model in both);
- the **client attacker's agents** (``generative`` with ``threat_model: client``): the global
  model it received in the round and local models it trains from it on its own partition;
- the **label-free fits**: ``task_agnostic``'s relation-preserving embedding and an outsider
  generator train once, a client generator each evaluated round.

The attacker's data is ``robustness.transfer.data``: ``public`` (held-out examples outside
the attacked subset, the first ``public_samples`` of the probe's seeded order) or ``client``
(that client's partition). Every draw is seeded from ``Stream.ROBUSTNESS``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion import (
    MIFGSM,
    EvasionAttack,
    GenerativeAttack,
    OnClassifier,
    TaskAgnostic,
    model_in_pixel_space,
    to_pixel_space,
)
from fedsim.federation import Federation
from fedsim.models import build_model
from fedsim.params import load_flat_params
from fedsim.scenario.robustness import RobustnessConfig, TransferConfig
from fedsim.seeding import Stream, derive_seed, torch_generator
from fedsim.training import TrainSettings, train_local
from server.probes.base import RoundView

__all__ = ["EvasionAttackers", "surrogate_model"]

log = logging.getLogger(__name__)


def surrogate_model(fed: Federation, name: str) -> nn.Module:
    """An untrained surrogate ``name`` for the federation's dataset (raises on a bad name)."""
    dataset = fed.data.dataset
    return build_model(name, dataset.input_shape, dataset.num_classes)


def core_attacks(attacks: list[EvasionAttack]) -> list[EvasionAttack]:
    """The configured attacks, unwrapped from :class:`~fedsim.evasion.OnClassifier`."""
    return [a.attack if isinstance(a, OnClassifier) else a for a in attacks]


class EvasionAttackers:
    """What the probe's attackers train, built lazily, seeded, and kept across rounds.

    Parameters
    ----------
    fed : Federation
        The run's data and model factory.
    config : RobustnessConfig
        The ``robustness`` block (``transfer`` says who the attacker is and its data).
    held_out : tuple of Tensor
        The server's held-out examples (normalised) and labels.
    public : Tensor
        Indices into ``held_out`` outside the attacked subset, in the probe's seeded order.
    """

    def __init__(
        self,
        fed: Federation,
        config: RobustnessConfig,
        held_out: tuple[torch.Tensor, torch.Tensor],
        public: torch.Tensor,
    ) -> None:
        self.fed, self.config, self.held_out, self.public = fed, config, held_out, public
        self.transfer: MIFGSM | None = None
        self.surrogates: list[nn.Module] = []  # by index: MI-FGSM's and the outsider's agents

    @property
    def _transfer_config(self) -> TransferConfig:
        return self.config.transfer or TransferConfig()

    def needs_public_data(self, attacks: list[EvasionAttack]) -> bool:
        """Whether an attacker outside the federation trains on the public held-out data."""
        return self.config.transfer is not None or any(
            isinstance(a, TaskAgnostic)
            or (isinstance(a, GenerativeAttack) and a.threat_model == "outsider")
            for a in core_attacks(attacks)
        )

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The attacker's examples (normalised, as the data): a client's partition or public."""
        transfer = self._transfer_config
        if transfer.data == "client":
            return self.fed.data.client(transfer.client)
        held_x, held_y = self.held_out
        public = self.public[: transfer.public_samples].sort().values
        return held_x[public], held_y[public]

    def fit(self, attacks: list[EvasionAttack], view: RoundView, device: torch.device) -> None:
        """Train the label-free attackers: generators on their agents, relation embeddings.

        ``task_agnostic`` and an ``outsider`` generator train once (on :meth:`data`, labels
        dropped); a ``client`` generator retrains each evaluated round on that round's agents
        (:meth:`client_agents`).
        """
        seed, dataset = self.fed.scenario.seed, self.fed.data.dataset
        for index, attack in enumerate(core_attacks(attacks)):
            client = isinstance(attack, GenerativeAttack) and attack.threat_model == "client"
            if not isinstance(attack, GenerativeAttack | TaskAgnostic) or (
                attack.fitted and not client
            ):
                continue
            if client:
                x = self.fed.data.client(self._transfer_config.client)[0]
            else:
                x = self.data()[0]
            x = to_pixel_space(x, dataset.mean, dataset.std).to(device)
            generator = torch_generator(
                seed, Stream.ROBUSTNESS, view.round if client else 0, 7, index
            )
            if isinstance(attack, TaskAgnostic):
                attack.fit(x, generator)
            elif client:
                attack.fit(self.client_agents(view, attack.agents, device), x, generator)
            else:
                attack.fit(self.surrogate_models(attack.agents, device), x, generator)

    def client_agents(self, view: RoundView, count: int, device: torch.device) -> list[nn.Module]:
        """A client attacker's agents in round ``view.round``: the models it holds itself.

        Agent 0 is the global model it received at the round's start (``view.before``); agents
        1 … k−1 are local models it trains from it on its own partition (the client of
        ``robustness.transfer.client``, default 0) with the run's local procedure, each from
        its own seeded shuffle. The target, the global model after the round, it never sees.
        """
        fed, dataset = self.fed, self.fed.data.dataset
        x, y = fed.data.client(self._transfer_config.client)
        settings = TrainSettings.from_clients(fed.scenario.clients)
        agents = []
        for index in range(count):
            model = fed.build_model()
            load_flat_params(model, view.before)
            if index:
                generator = torch_generator(
                    fed.scenario.seed, Stream.ROBUSTNESS, view.round, 8, index
                )
                train_local(model, x, y, settings, generator)
            model.eval()
            agents.append(model_in_pixel_space(model, dataset.mean, dataset.std).to(device))
        return agents

    def surrogate_models(self, count: int, device: torch.device) -> list[nn.Module]:
        """The outside attacker's first ``count`` surrogates, trained once each and kept.

        Surrogate i is ``robustness.transfer.surrogates[i mod M]`` trained on :meth:`data`
        from its own seed, so MI-FGSM's ensemble and the generative attack's agents are the
        same models wherever their counts overlap.
        """
        transfer, fed = self._transfer_config, self.fed
        dataset = fed.data.dataset
        x, y = self.data()
        settings = TrainSettings(
            transfer.epochs, transfer.batch_size, transfer.lr, transfer.momentum
        )
        for index in range(len(self.surrogates), count):
            name = transfer.surrogates[index % len(transfer.surrogates)]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(fed.scenario.seed, Stream.ROBUSTNESS, 0, 1, index))
                model = surrogate_model(fed, name).to(device)
            generator = torch_generator(fed.scenario.seed, Stream.ROBUSTNESS, 0, 2, index)
            train_local(model, x, y, settings, generator)
            model.eval()
            self.surrogates.append(
                model_in_pixel_space(model, dataset.mean, dataset.std).to(device)
            )
            log.info("robustness: surrogate %d (%s) trained on %d examples", index, name, len(y))
        return self.surrogates[:count]

    def transfer_attack(self, device: torch.device) -> MIFGSM:
        """MI-FGSM on the attacker's surrogate(s) (:meth:`surrogate_models`), built once."""
        if self.transfer is not None:
            return self.transfer
        transfer = self.config.transfer
        if transfer is None:
            raise InvalidSettingError("the robustness block has no transfer attacker")
        self.transfer = MIFGSM(
            eps=transfer.eps,
            steps=transfer.steps,
            decay=transfer.decay,
            norm=transfer.norm,
            surrogates=self.surrogate_models(len(transfer.surrogates), device),
        )
        return self.transfer
