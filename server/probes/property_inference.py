"""Property inference (model → data): whether an update comes from data holding a property.

Configured by ``privacy.property_inference`` (the property: a class c, held when at least
``min_fraction`` of a data set is class c; or a named image feature,
:mod:`fedsim.membership.features`, held when at least ``min_fraction`` of a data set has it).
Each measured round, the attacker trains ``shadow_updates`` updates of its own per side from
the round's global model — on data with the property and on data without it
(:func:`~fedsim.membership.property.shadow_mixtures` for a class,
:func:`~fedsim.membership.property.shadow_shares` for a feature; the scenario's local
procedure: epochs, batch size, learning rate) — fits a logistic regression
to their output-layer features (the whole update's for a feature: a pixel statistic changes
every layer's update, not mainly the output layer's) and scores what it observes
(:mod:`fedsim.membership.property`, Melis et al., IEEE S&P 2019):

- ``threat_model: server`` (threat model ``update``; refused under secure aggregation): the
  attacker's data is the server's held-out set (:class:`~server.server_data.ServerData`), its
  shadow data sets as large as the round's clients' (their reported example counts, drawn at
  random); it scores each client's update. ``property_auc``: the AUC of the round's scores
  against which of its clients hold the property.
- ``threat_model: client`` (threat model ``aggregate``): a client (``attacker``) draws its
  shadow data from its own data (with the property's examples, or without) and scores the global
  model's change between rounds. The truth of a round: whether the round's other clients'
  data together hold the property. ``property_auc``: the AUC over the measured rounds so far
  (written once both outcomes occurred; with every client in every round they never differ,
  so sample fewer clients per round).

Each round's figures also carry ``property_inference`` (scores, truths) and
``property_inference_s`` (the probe's seconds); ``summary.json`` gets
``property_auc_pooled`` (server: the AUC over every measured round's updates together).
Shadow training is plain SGD from the global model, whatever the clients run (DP-SGD, an
attack): the attacker's classifier is fitted on noiseless updates, so local DP lowers its AUC.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsim.errors import ScenarioError
from fedsim.federation import Federation
from fedsim.membership.features import FEATURES, ImageFeature
from fedsim.membership.property import (
    PropertyClassifier,
    holds_share,
    property_auc,
    shadow_mixtures,
    shadow_shares,
)
from fedsim.params import flat_params, load_flat_params
from fedsim.scenario.privacy import PropertyInferenceConfig
from fedsim.seeding import Stream, numpy_rng, torch_generator
from fedsim.training import TrainSettings, single_thread, train_local
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.server_data import ServerData

__all__ = ["PropertyInferenceProbe", "output_layer", "property_feature"]

log = logging.getLogger(__name__)

# sub-stream of Stream.MEMBERSHIP (membership inference's family of draws)
_PROPERTY = 31


def output_layer(model: nn.Module) -> slice:
    """The flat coordinates of the model's last parameterised module (its output layer).

    Examples
    --------
    >>> output_layer(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    slice(16, 26, None)
    """
    names = [(name.rsplit(".", 1)[0], p.numel()) for name, p in model.named_parameters()]
    last, total = names[-1][0], sum(n for _, n in names)
    size = 0
    for prefix, n in reversed(names):
        if prefix != last:
            break
        size += n
    return slice(total - size, total)


@PROBES.register("property_inference")
class PropertyInferenceProbe(Probe):
    """Property inference by a curious server or client (see the module docstring).

    Parameters
    ----------
    fed : Federation
        The run's data, model factory and scenario.
    data : ServerData
        The server's held-out set (the server's shadow data).
    """

    name = "property_inference"
    direction = "model→data"

    def __init__(self, fed: Federation, data: ServerData) -> None:
        config = fed.scenario.privacy.property_inference
        if config is None:
            raise ValueError("the scenario has no privacy.property_inference block")
        self.fed, self.config = fed, config
        self.target = config.property.target_class
        self.feature = property_feature(fed, config)
        self.min_fraction = config.property.min_fraction
        self.model = fed.model("property")
        # a label property shows in the output layer; a pixel feature throughout the network
        # (whole update: pooled AUC 0.67-0.81 against 0.56-0.71 for the output layer alone,
        # bright-skewed digits, seeds 0-4; docs/property-inference.md)
        self.layer = output_layer(self.model) if self.feature is None else slice(0, None)
        self.settings = TrainSettings.from_clients(fed.scenario.clients)
        self.attacker = attacker_of(fed, config) if config.threat_model == "client" else None
        if self.attacker is None:
            self.pool = data.held_out
        else:
            self.pool = fed.data.client(self.attacker)
        self.truths: dict[int, bool] = {}  # client → holds the property (filled when seen)
        self.history: list[tuple[float, bool]] = []  # (score, truth) of every scored update

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> PropertyInferenceProbe | None:
        """The probe ``privacy.property_inference`` asks for (``None`` without the block).

        Raises
        ------
        ScenarioError
            A class the dataset lacks, rounds past the run's end, an attacker out of range or
            whose data cannot give both sides, a held-out set without the class.
        """
        config = fed.scenario.privacy.property_inference
        if config is None:
            return None
        path = "privacy.property_inference"
        classes = fed.data.dataset.num_classes
        if config.property.target_class is not None and config.property.target_class >= classes:
            raise ScenarioError(
                f"{path}.property.class", config.property.target_class, f"0..{classes - 1}"
            )
        feature = property_feature(fed, config)  # raises on an unknown name
        check_rounds(f"{path}.rounds", config.rounds, fed.scenario.rounds)
        if config.threat_model == "server":
            has = marks(data.held_out, config.property.target_class, feature)
            if not (has.any() and (~has).any()):
                key = "class" if feature is None else "feature"
                raise ScenarioError(
                    f"{path}.property.{key}",
                    getattr(config.property, "target_class" if feature is None else "feature"),
                    "a property the server's held-out set (its shadow data) holds in some "
                    "examples and not in others",
                )
        else:
            attacker_of(fed, config)  # raises on a bad attacker
        return cls(fed, data)

    @property
    def threat_model(self) -> str:
        """``update`` (a curious server) or ``aggregate`` (a client)."""
        return "update" if self.attacker is None else "aggregate"

    @property
    def rounds(self) -> list[int]:
        """The measured rounds (``privacy.property_inference.rounds``; default every round)."""
        return list(self.config.rounds or range(1, self.fed.scenario.rounds + 1))

    def describe(self) -> dict[str, Any]:
        """The probe's identity, with the property and the attacker."""
        return {
            **super().describe(),
            "property": {
                **(
                    {"class": self.target}
                    if self.feature is None
                    else {"feature": self.feature.name, "threshold": self.feature.threshold}
                ),
                "min_fraction": self.min_fraction,
            },
            "attacker": self.attacker,
        }

    def holds(self, client: int) -> bool:
        """Whether ``client``'s training data hold the property (the ground truth)."""
        if client not in self.truths:
            has = marks(self.fed.data.client(client), self.target, self.feature)
            self.truths[client] = holds_share(has, self.min_fraction)
        return self.truths[client]

    def shadow_updates(self, weights: torch.Tensor, sizes: list[int], server_round: int) -> Any:
        """``(2k, d)`` the attacker's updates from ``weights`` (k with the property, k without).

        Each shadow data set draws its group counts from its mix and examples of each group
        from the attacker's pool with replacement; its size is drawn from ``sizes``. The groups
        are the classes for a class property, and (without, with) the feature for a feature.
        """
        k = self.config.shadow_updates
        rng = numpy_rng(self.fed.scenario.seed, Stream.MEMBERSHIP, _PROPERTY, server_round)
        x, y = self.pool
        if self.feature is None:
            labels = y.numpy()
            classes = self.fed.data.dataset.num_classes
            mixes, has = shadow_mixtures(classes, self.target, k, self.min_fraction, rng)
        else:
            labels = self.feature.has(x).numpy().astype(np.int64)
            classes = 2
            shares, has = shadow_shares(k, self.min_fraction, rng)
            mixes = np.stack([1.0 - shares, shares], axis=1)
        present = np.array([(labels == c).any() for c in range(classes)])
        mixes = mixes * present
        mixes /= mixes.sum(axis=1, keepdims=True)
        by_class = [np.flatnonzero(labels == c) for c in range(classes)]
        start = weights.to(torch.float32)
        device = next(self.model.parameters()).device
        rows = []
        with single_thread(device):
            for i, mix in enumerate(mixes):
                size = max(1, int(rng.choice(sizes)))
                counts = rng.multinomial(size, mix)
                index = np.concatenate(
                    [rng.choice(by_class[c], size=n) for c, n in enumerate(counts) if n]
                )
                load_flat_params(self.model, start)
                generator = torch_generator(
                    self.fed.scenario.seed, Stream.MEMBERSHIP, _PROPERTY, server_round, i
                )
                chosen = torch.from_numpy(index)
                train_local(self.model, x[chosen], y[chosen], self.settings, generator)
                rows.append(flat_params(self.model).to(torch.float64) - start.to(torch.float64))
        return torch.stack(rows), has

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Fit the round's property classifier; score what the attacker sees; the AUC."""
        started = time.perf_counter()
        if self.attacker is None:
            observed = [(u.update, self.holds(u.client_id), u.client_id) for u in view.updates]
            sizes = [u.num_examples for u in view.updates]
        else:
            others = [u.client_id for u in view.updates if u.client_id != self.attacker]
            if view.after is None or not others:
                return {}
            has = torch.cat(
                [marks(self.fed.data.client(c), self.target, self.feature) for c in others]
            )
            truth = holds_share(has, self.min_fraction)
            change = view.after.to(torch.float64) - view.before.to(torch.float64)
            observed = [(change, truth, -1)]
            sizes = [len(self.pool[1])]
        if not observed:
            return {}
        shadows, has = self.shadow_updates(view.before, sizes, view.round)
        classifier = PropertyClassifier(self.layer).fit(shadows, has)
        scores = classifier.score(torch.stack([u for u, _, _ in observed]))
        truths = np.array([t for _, t, _ in observed])
        self.history.extend(zip(scores.tolist(), truths.tolist(), strict=True))
        if self.attacker is None:
            auc = property_auc(scores, truths)
        else:
            auc = property_auc(*self._pooled())
        figures: dict[str, Any] = {
            "property_inference": {
                "threat_model": self.config.threat_model,
                "clients": [c for _, _, c in observed],
                "scores": scores.tolist(),
                "truth": truths.tolist(),
                "shadow_updates": int(len(has)),
            },
            "property_inference_s": time.perf_counter() - started,
        }
        if auc is not None:
            figures["property_auc"] = auc
        log.info(
            "round %d property inference (%s, %s): AUC %s over %d updates",
            view.round,
            f"class {self.target}" if self.feature is None else f"feature {self.feature.name}",
            self.config.threat_model,
            "n/a" if auc is None else f"{auc:.3f}",
            len(observed),
        )
        return figures

    def _pooled(self) -> tuple[np.ndarray, np.ndarray]:
        scores = np.array([s for s, _ in self.history])
        return scores, np.array([t for _, t in self.history], dtype=bool)

    def summary(self) -> dict[str, Any]:
        """``property_auc_pooled``: the AUC over every scored update of the measured rounds."""
        auc = property_auc(*self._pooled()) if self.history else None
        return {} if auc is None else {"property_auc_pooled": auc}

    def state_dict(self) -> dict[str, Any]:
        """Every scored update's (score, truth) so far."""
        return {"history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scores after a resume."""
        self.history = [(float(s), bool(t)) for s, t in state.get("history", [])]


def property_feature(fed: Federation, config: PropertyInferenceConfig) -> ImageFeature | None:
    """The named feature of ``property: {feature: ...}``, thresholded on the training pool.

    Raises
    ------
    ScenarioError
        An unknown feature name (the message lists the known ones).
    """
    name = config.property.feature
    if name is None:
        return None
    if name not in FEATURES:
        raise ScenarioError(
            "privacy.property_inference.property.feature",
            name,
            f"a known image feature: {', '.join(FEATURES.names())}",
        )
    return ImageFeature(name, fed.data.dataset.x_train)


def marks(
    data: tuple[torch.Tensor, torch.Tensor], target: int | None, feature: ImageFeature | None
) -> torch.Tensor:
    """``(n,)`` bool: which of ``data``'s (images, labels) have the property."""
    return data[1] == target if feature is None else feature.has(data[0])


def attacker_of(fed: Federation, config: PropertyInferenceConfig) -> int:
    """The attacking client of ``threat_model: client``: ``attacker``, or the first able one.

    Able: its data hold both examples with the property and without (both sides of its
    shadows).

    Raises
    ------
    ScenarioError
        ``attacker`` is not a client, or its data cannot give both sides.
    """
    path, target = "privacy.property_inference.attacker", config.property.target_class
    feature = property_feature(fed, config)
    what = f"class {target}" if feature is None else f"feature {feature.name}"
    clients = fed.scenario.data.num_clients

    def able(c: int) -> bool:
        has = marks(fed.data.client(c), target, feature)
        return bool(has.any()) and bool((~has).any())

    if config.attacker is None:
        found = next((c for c in range(clients) if able(c)), None)
        if found is None:
            raise ScenarioError(path, None, f"a client whose data hold {what}")
        return found
    if config.attacker >= clients:
        raise ScenarioError(path, config.attacker, f"a client id 0..{clients - 1}")
    if not able(config.attacker):
        raise ScenarioError(
            path, config.attacker, f"a client whose data hold {what} and other examples"
        )
    return config.attacker
