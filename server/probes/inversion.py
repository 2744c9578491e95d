"""The gradient-inversion probe (model → data): what a curious party reconstructs, and how well.

Configured by ``privacy.inversion``; two threat models:

- ``server`` (default; the probe's threat model ``update``): the curious server attacks
  individual clients' updates Δᵢ as they arrive (before any defence or central DP, which the
  server itself applies), in the chosen rounds and for the chosen clients.
- ``client`` (the probe's threat model ``aggregate``): a curious client attacks the change of
  the global model between two consecutive rounds, w_{t+1} − w_t = η_s·Δ̄ — the aggregate of
  the round's updates after the defence and any central DP noise.

Either way the update is read as a gradient, ĝ = −Δ / (η·T) (:func:`update_as_gradient`; η the
clients' learning rate, T their local steps, and for the client threat model also divided by
the server learning rate η_s), and the attack reconstructs ``num_images`` inputs (default: the
batch size) on the model at w_t. The ground truth is the batch of each attacked client's
*first local step*, reproduced from the run's seeded streams: with one local step (the
FedSGD/DLG setting) it is exactly the data behind the update; with more steps the update mixes
several batches and the score shows how much of the first still leaks. Reconstructions are
paired with originals by minimum total MSE, then scored with MSE, PSNR, SSIM and label accuracy
(:func:`reconstruction_metrics`), and drawn as PNG grids in ``<run dir>/inversion/``.

**A malicious server** (``attack: imprint | trap_weights``, :mod:`fedsim.inversion.crafted`)
crafts the model it sends in the attacked rounds (:meth:`InversionProbe.crafted_models`,
from the server's held-out inputs as its public pool); the strategy sends it instead of the
global model and keeps the global model unchanged in that round. The attack then reads the
inputs straight out of each update (in the clear) or out of each sum secure aggregation
reveals (``defense.secure_aggregation``: the server sees only sums, so ``threat_model:
server`` attacks those). The images behind an update are every image its client trained on
in the round (one local step: its first batch). ``inversion_recovered`` is the share of them
some reconstruction reproduces at PSNR ≥ 30 dB, over every update or sum attacked in the
round.

**Model inconsistency** (``malicious_model: inconsistent``,
:mod:`fedsim.inversion.inconsistency`): in the attacked rounds every client but a target (the
first of ``clients`` sampled, else the lowest sampled id) gets a dead model, the target the
attack's model (the global one for the optimisation attacks). The sum holding the target is
``n_t Δ_t / Σ n_i`` but for the head's bias; the probe rescales it and attacks it as the
target's update (key ``client<t>``), leaving the head's bias out of the matching.
"""

from __future__ import annotations

import inspect
import logging
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.federation import Federation
from fedsim.inversion import INVERSION_ATTACKS, build_inversion
from fedsim.inversion.base import Reconstruction
from fedsim.inversion.crafted import RECOVERED_DB, best_psnr, first_linear
from fedsim.inversion.inconsistency import kill, moving_parameters
from fedsim.inversion.metrics import pair_reconstructions, reconstruction_metrics
from fedsim.inversion.plot import save_reconstruction_grid
from fedsim.inversion.updates import unflatten_like, update_as_gradient
from fedsim.params import flat_params, load_flat_params
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, derive_seed
from fedsim.training import single_thread
from fedsim.validation import require_known
from server.probes.base import PROBES, Probe, RevealedSum, RoundView, check_rounds
from server.probes.inversion_targets import (
    first_batch,
    local_settings,
    local_step_count,
    round_images,
)
from server.replies import ClientUpdate
from server.server_data import ServerData

__all__ = ["InversionProbe"]

log = logging.getLogger(__name__)

MAX_GRID_IMAGES = 16


@PROBES.register("inversion")
class InversionProbe(Probe):
    """The run's inversion attack, applied in the rounds and to the clients the scenario names.

    Parameters
    ----------
    fed : Federation
        The run's data, model factory and malicious set (the server's own process).
    out_dir : Path, optional
        The run directory; PNG grids go to ``out_dir / "inversion"`` (none without it).
    public : torch.Tensor, optional
        The server's public inputs (its held-out set), from which a crafted-model attack
        crafts its model; required by those attacks.
    """

    name = "inversion"
    direction = "model→data"

    def __init__(
        self, fed: Federation, out_dir: Path | None = None, public: torch.Tensor | None = None
    ) -> None:
        config = fed.scenario.privacy.inversion
        if config is None:
            raise ValueError("the scenario has no privacy.inversion block")
        self.fed = fed
        self.config = config
        self.out_dir = out_dir
        seed = derive_seed(fed.scenario.seed, Stream.INVERSION) % 2**31
        kind = INVERSION_ATTACKS.get(config.attack)
        self.crafts = bool(getattr(kind, "crafts_model", False))
        if self.crafts:  # analytic: no iterations or restarts
            if public is None:
                raise ValueError(f"{config.attack} crafts its model from public inputs")
            takes_seed = "seed" in inspect.signature(kind).parameters
            self.attack = build_inversion(
                config.attack, **{**({"seed": seed} if takes_seed else {}), **config.params}
            )
        else:
            local = local_settings(fed) if getattr(kind, "simulates_local_training", False) else {}
            self.attack = build_inversion(
                config.attack,
                **{
                    "iterations": config.iterations,
                    "restarts": config.restarts,
                    "seed": seed,
                    **local,
                    **config.params,
                },
            )
        #: The attack unrolls the clients' local training: it reconstructs every image a
        #: client trained on in the round, not the first batch.
        self.simulates = bool(getattr(kind, "simulates_local_training", False))
        self.public = public
        self.inconsistent = config.malicious_model == "inconsistent"
        self.ignore: list[int] = []  # what the dead model's updates still move
        self.sent: dict[int, torch.Tensor] = {}  # the round's crafted weights, per client
        self.target: int | None = None  # model inconsistency: the round's target
        x = fed.data.dataset.x_train
        self.data_range = (float(x.min()), float(x.max()))
        self.round_results: dict[str, dict[str, float]] = {}
        self.history: list[dict[str, float]] = []

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> InversionProbe | None:
        """The probe ``privacy.inversion`` asks for (``None`` without that block).

        Raises
        ------
        ScenarioError
            An unknown attack, rounds past the run's end, client ids outside the federation,
            or settings the attack refuses.
        """
        config, scenario = fed.scenario.privacy.inversion, fed.scenario
        if config is None:
            return None
        require_known("privacy.inversion.attack", config.attack, INVERSION_ATTACKS.names())
        check_rounds("privacy.inversion.rounds", config.rounds, scenario.rounds)
        n = scenario.data.num_clients
        if config.clients is not None and any(not 0 <= c < n for c in config.clients):
            raise ScenarioError(
                "privacy.inversion.clients", config.clients, f"client ids 0..{n - 1}"
            )
        public = data.held_out[0]
        try:
            probe = cls(fed, out_dir, public)
        except InvalidSettingError as e:
            raise ScenarioError("privacy.inversion.params", config.params, str(e)) from None
        if probe.crafts:  # the model must take the crafting: try it once
            model = fed.model("inversion")
            try:
                first_linear(model, math.prod(public.shape[1:]))
            except InvalidSettingError as e:
                raise ScenarioError("model.name", scenario.model.name, str(e)) from None
            try:
                probe.attack.craft(model, public)
            except InvalidSettingError as e:
                raise ScenarioError("privacy.inversion.params", config.params, str(e)) from None
        if probe.inconsistent:
            probe.ignore = _dead_model_moves(fed, data, config.threat_model)
        if probe.crafts and config.threat_model != "server":
            raise ScenarioError(
                "privacy.inversion.threat_model",
                config.threat_model,
                f"server for {config.attack} (the server crafts the model it sends)",
            )
        images = config.num_images or scenario.clients.batch_size
        classes = fed.data.dataset.num_classes
        if config.attack == "idlg" and images > classes:
            raise ScenarioError(
                "privacy.inversion.num_images",
                images,
                f"at most the {classes} classes for idlg (it recovers one label per class); "
                "set num_images or use dlg for larger batches",
            )
        return probe

    @property
    def threat_model(self) -> str:
        """``update`` (the scenario's ``server``) or ``aggregate`` (its ``client``).

        Under secure aggregation the server sees only sums: ``aggregate`` either way.
        """
        if self.scenario.defense.secure_aggregation is not None:
            return "aggregate"
        return "update" if self.config.threat_model == "server" else "aggregate"

    def crafted_models(
        self, server_round: int, global_weights: torch.Tensor, clients: list[int]
    ) -> dict[int, torch.Tensor]:
        """The malicious server's weights for the attacked round's ``clients``.

        A crafted-model attack's model for every client; with ``malicious_model:
        inconsistent`` the attack's model (the global one for the optimisation attacks) for
        the target only, and a dead model (:func:`~fedsim.inversion.inconsistency.kill`)
        for the others.
        """
        self.sent, self.target = {}, None
        if not (self.crafts or self.inconsistent) or server_round not in self.config.rounds:
            return {}
        chosen = self.config.clients
        target = next((c for c in chosen if c in clients), None) if chosen else min(clients or [0])
        if not clients or (self.inconsistent and target is None):
            return {}
        model = self.fed.model("inversion")
        load_flat_params(model, global_weights)
        if self.crafts:
            self.attack.craft(model, self.public)
        weights = flat_params(model).detach().cpu()
        if not self.inconsistent:
            self.sent = {c: weights for c in clients}
            return dict(self.sent)
        load_flat_params(model, global_weights)
        kill(model)
        dead = flat_params(model).detach().cpu()
        self.target = target
        self.sent = {c: weights if c == target else dead for c in clients}
        return dict(self.sent)

    @property
    def rounds(self) -> list[int]:
        """The rounds attacked (``privacy.inversion.rounds``)."""
        return list(self.config.rounds)

    @property
    def scenario(self) -> Scenario:
        """The run's scenario."""
        return self.fed.scenario

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Attack the round's updates (server) or the global model's change (client)."""
        self.round_results = {}
        if self.config.threat_model == "server" and view.sums:
            self.attack_sums(view.round, view.before, view.sums)
        elif self.config.threat_model == "server":
            self.attack_updates(view.round, view.before, view.updates)
        elif view.after is not None:
            self.attack_aggregate(view.round, view.before, view.after, view.updates)
        return self.round_metrics()

    def state_dict(self) -> dict[str, Any]:
        """The scores of every update attacked so far."""
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scores of the rounds before a resume."""
        self.history = list(state.get("history", []))

    def attack_updates(
        self, server_round: int, global_weights: torch.Tensor, updates: list[ClientUpdate]
    ) -> None:
        """Server threat model: reconstruct from each chosen client's own update."""
        if self.config.threat_model != "server" or server_round not in self.config.rounds:
            return
        chosen = self.config.clients
        targets = [u for u in updates if chosen is None or u.client_id in chosen]
        if self.inconsistent:  # the others trained a dead model
            targets = [u for u in updates if u.client_id == self.target]
        for update in targets[: self.config.max_clients]:
            client = update.client_id
            if self.crafts:
                self._read(
                    f"client{client}",
                    server_round,
                    self.sent.get(client, global_weights),
                    update.update,
                    [(client, round_images(self.fed, client, server_round))],
                )
                continue
            indices = first_batch(self.fed, client, server_round)
            steps = local_step_count(self.fed, client)
            self._attack(
                f"client{client}",
                server_round,
                global_weights,
                update.update,
                scale=self.scenario.clients.lr * steps,
                batches=[(client, indices)],
            )

    def attack_sums(
        self, server_round: int, global_weights: torch.Tensor, sums: list[RevealedSum]
    ) -> None:
        """Server threat model under secure aggregation: reconstruct from each revealed sum.

        The sum's mean Σ n_i Δ_i / Σ n_i is read as the gradient of every image its members
        trained on (a crafted-model attack), or attacked as one update whose batch is the
        members' first batches (the optimisation attacks).
        """
        if self.config.threat_model != "server" or server_round not in self.config.rounds:
            return
        if self.inconsistent:
            self._attack_target(server_round, global_weights, sums)
            return
        for index, revealed in enumerate(sums):
            members = revealed.members
            key = "sum" if len(sums) == 1 else f"sum{index}"
            if self.crafts:
                weights = self.sent.get(members[0], global_weights)
                batches = [(c, round_images(self.fed, c, server_round)) for c in members]
                self._read(key, server_round, weights, revealed.mean, batches)
                continue
            steps = statistics.median(local_step_count(self.fed, c) for c in members)
            batches = [(c, first_batch(self.fed, c, server_round)) for c in members]
            scale = self.scenario.clients.lr * steps
            self._attack(
                key, server_round, global_weights, revealed.mean, scale=scale, batches=batches
            )

    def _attack_target(
        self, server_round: int, global_weights: torch.Tensor, sums: list[RevealedSum]
    ) -> None:
        """Model inconsistency: the sum holding the target is n_t Δ_t / Σ n_i; attack Δ_t.

        Only the parameters the dead model still moves (:attr:`ignore`) differ; the
        optimisation attacks leave them out of their matching.
        """
        t = self.target
        revealed = next((r for r in sums if t in r.num_examples), None)
        if t is None or revealed is None:
            return
        total = float(sum(revealed.num_examples.values()))
        delta = revealed.mean * (total / revealed.num_examples[t])
        if self.crafts:
            images = [(t, round_images(self.fed, t, server_round))]
            self._read(f"client{t}", server_round, self.sent[t], delta, images)
            return
        self._attack(
            f"client{t}",
            server_round,
            global_weights,
            delta,
            scale=self.scenario.clients.lr * local_step_count(self.fed, t),
            batches=[(t, first_batch(self.fed, t, server_round))],
            ignore=self.ignore,
        )

    def attack_aggregate(
        self,
        server_round: int,
        before: torch.Tensor,
        after: torch.Tensor,
        updates: list[ClientUpdate],
    ) -> None:
        """Client threat model: reconstruct from the global model's change in this round."""
        if self.config.threat_model != "client" or server_round not in self.config.rounds:
            return
        if not updates:
            return
        steps = statistics.median(local_step_count(self.fed, u.client_id) for u in updates)
        scale = self.scenario.defense.server_lr * self.scenario.clients.lr * steps
        batches = [(u.client_id, first_batch(self.fed, u.client_id, server_round)) for u in updates]
        delta = after.to(torch.float64) - before.to(torch.float64)
        self._attack("global", server_round, before, delta, scale=scale, batches=batches)

    def _attack(
        self,
        key: str,
        server_round: int,
        weights: torch.Tensor,
        delta: torch.Tensor,
        *,
        scale: float,
        batches: list[tuple[int, torch.Tensor]],
        ignore: list[int] | None = None,
    ) -> None:
        if self.simulates:
            batches = [(c, round_images(self.fed, c, server_round)) for c, _ in batches]
        originals, labels = self._originals(batches)
        if len(labels) == 0:
            log.info("round %d %s: empty first batch, nothing to reconstruct", server_round, key)
            return
        model = self.fed.model("inversion")
        load_flat_params(model, weights)
        device = next(model.parameters()).device
        pieces = unflatten_like(delta.to(torch.float32).to(device), model)
        target = update_as_gradient(pieces, lr=scale, local_steps=1)
        default = (
            len(labels) if self.simulates else min(len(labels), self.scenario.clients.batch_size)
        )
        count = self.config.num_images or default
        dataset = self.fed.data.dataset
        with single_thread(device):  # small models: threads only add overhead
            reconstruction = self.attack(
                model,
                target,
                input_shape=tuple(dataset.input_shape),
                num_classes=dataset.num_classes,
                batch_size=count,
                data_range=self.data_range,
                ignore=ignore or (),
            )
        originals, labels, reconstruction = _pair_up(originals, labels, reconstruction)
        metrics = reconstruction_metrics(originals, labels, reconstruction, self.data_range)
        self.round_results[key] = metrics
        self.history.append(metrics)
        log.info("round %d %s: %s", server_round, key, metrics)
        if self.config.save_images and self.out_dir is not None:
            shown = slice(0, MAX_GRID_IMAGES)
            save_reconstruction_grid(
                originals[shown],
                reconstruction.x[shown],
                self.out_dir / "inversion" / f"round{server_round:03d}_{key}.png",
                titles=[self.config.attack],
                data_range=self.data_range,
            )

    def _originals(self, batches: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        """The images (and labels) behind an update: each client's ``indices``, in order."""
        xs, ys = [], []
        for client, indices in batches:
            x, y = self.fed.data.client(client)
            xs.append(x[indices])
            ys.append(y[indices])
        return torch.cat(xs), torch.cat(ys)

    def _read(
        self,
        key: str,
        server_round: int,
        weights: torch.Tensor,
        delta: torch.Tensor,
        batches: list[tuple[int, torch.Tensor]],
    ) -> None:
        """A crafted-model attack: read candidates out of ``delta``, score every image behind it."""
        originals, _ = self._originals(batches)
        if len(originals) == 0:
            return
        model = self.fed.model("inversion")
        load_flat_params(model, weights)
        pieces = unflatten_like(delta.to(torch.float64), model)
        shape = tuple(self.fed.data.dataset.input_shape)
        reconstruction = self.attack(model, pieces, input_shape=shape, data_range=self.data_range)
        best = best_psnr(originals, reconstruction.x, self.data_range)
        recovered = int((best >= RECOVERED_DB).sum())
        metrics = {
            "inversion_recovered": recovered / len(originals),
            "recovered": recovered,
            "images": len(originals),
            "candidates": len(reconstruction.x),
            "psnr": _mean(best.clamp(max=100.0).tolist()),
        }
        self.round_results[key] = metrics
        self.history.append(metrics)
        log.info("round %d %s: %s", server_round, key, metrics)
        if self.config.save_images and self.out_dir is not None and len(reconstruction.x):
            flat_x = originals.reshape(len(originals), -1).to(torch.float64)
            flat_c = reconstruction.x.reshape(len(reconstruction.x), -1).to(torch.float64)
            nearest = torch.cdist(flat_x, flat_c).argmin(dim=1)
            shown = slice(0, MAX_GRID_IMAGES)
            save_reconstruction_grid(
                originals[shown],
                reconstruction.x[nearest][shown].to(originals.dtype),
                self.out_dir / "inversion" / f"round{server_round:03d}_{key}.png",
                titles=[self.config.attack],
                data_range=self.data_range,
            )

    def round_metrics(self) -> dict[str, Any]:
        """Scores of the current round: per attacked update, and the mean PSNR/SSIM over them.

        A crafted-model attack gives ``inversion_recovered`` over every image behind the
        round's attacked updates or sums, and the mean PSNR of each image's nearest candidate.
        """
        if not self.round_results:
            return {}
        results = self.round_results.values()
        if self.crafts:
            images = sum(r["images"] for r in results)
            return {
                "inversion": self.round_results,
                "inversion_recovered": sum(r["recovered"] for r in results) / images,
                "psnr": _mean(r["psnr"] for r in results),
            }
        return {
            "inversion": self.round_results,
            "psnr": _mean(r["psnr"] for r in results),
            "ssim": _mean(r["ssim"] for r in results),
        }

    def summary(self) -> dict[str, Any]:
        """Scores over every attacked update of the run, for ``summary.json``."""
        if not self.history:
            return {"inversion_attacks": 0}
        if self.crafts:
            return {
                "inversion_attacks": len(self.history),
                "psnr": _mean(r["psnr"] for r in self.history),
                "best_psnr": max(r["psnr"] for r in self.history),
            }
        return {
            "inversion_attacks": len(self.history),
            "psnr": _mean(r["psnr"] for r in self.history),
            "best_psnr": max(r["psnr"] for r in self.history),
            "ssim": _mean(r["ssim"] for r in self.history),
            "inversion_label_accuracy": _mean(r["label_accuracy"] for r in self.history),
        }


def _dead_model_moves(fed: Federation, data: ServerData, threat_model: str) -> list[int]:
    """What the model-inconsistency attack's dead model still moves: its head's bias.

    Raises
    ------
    ScenarioError
        The server's threat model is not ``server``, or the model cannot be killed (a sigmoid
        or a skip connection lets gradients past the dead layer).
    """
    if threat_model != "server":
        raise ScenarioError(
            "privacy.inversion.threat_model",
            threat_model,
            "server for malicious_model: inconsistent (the server sends the models)",
        )
    name = fed.scenario.model.name
    model = fed.model("inversion")
    try:
        kill(model)
    except InvalidSettingError as e:
        raise ScenarioError("model.name", name, str(e)) from None
    x, y = data.held_out
    moving = moving_parameters(model, x[:64], y[:64])
    if moving != [len(list(model.parameters())) - 1]:
        raise ScenarioError(
            "model.name",
            name,
            "a model whose gradients one dead ReLU layer stops (mlp, cnn) for malicious_model: "
            f"inconsistent; on {name} the dead model still moves parameters {moving}",
        )
    return moving


def _mean(values: Any) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _pair_up(
    originals: torch.Tensor, labels: torch.Tensor, reconstruction: Reconstruction
) -> tuple[torch.Tensor, torch.Tensor, Reconstruction]:
    """Keep min(#originals, #reconstructions) pairs matched by minimum total MSE."""
    rec_index, orig_index = pair_reconstructions(reconstruction.x, originals)
    paired = Reconstruction(
        x=reconstruction.x[rec_index].to(originals.dtype),
        labels=reconstruction.labels[rec_index],
        grad_loss=reconstruction.grad_loss,
    )
    return originals[orig_index], labels[orig_index], paired
