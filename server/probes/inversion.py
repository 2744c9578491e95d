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
"""

from __future__ import annotations

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
from fedsim.inversion.metrics import pair_reconstructions, reconstruction_metrics
from fedsim.inversion.plot import save_reconstruction_grid
from fedsim.inversion.updates import unflatten_like, update_as_gradient
from fedsim.params import load_flat_params
from fedsim.privacy.dp_sgd import draw_batches, local_steps
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, derive_seed, torch_generator
from fedsim.training import single_thread
from fedsim.validation import require_known
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.replies import ClientUpdate
from server.server_data import ServerData

__all__ = ["InversionProbe", "first_batch", "local_step_count"]

log = logging.getLogger(__name__)

MAX_GRID_IMAGES = 16


def first_batch(fed: Federation, client_id: int, server_round: int) -> torch.Tensor:
    """Indices of the batch of a client's first local step in ``server_round``.

    The first draw of the client's training generator (seed, TRAIN, round, client), made by the
    batch sampler DP-SGD uses (:func:`~fedsim.privacy.dp_sgd.draw_batches`): Poisson sampling
    at q = B/n for a DP-SGD client with ``poisson_sampling``, otherwise ``randperm(n)[:B]``,
    which is also plain local SGD's first batch.
    """
    scenario = fed.scenario
    n, batch_size = len(fed.data.client(client_id)[1]), scenario.clients.batch_size
    generator = torch_generator(scenario.seed, Stream.TRAIN, server_round, client_id)
    local = scenario.privacy.local_dp
    poisson = local is not None and local.poisson_sampling and client_id not in fed.malicious
    return draw_batches(n, batch_size, 1, poisson, generator)[0]


def local_step_count(fed: Federation, client_id: int) -> int:
    """T, the client's local steps per round: E·⌈n/B⌉ (SGD) or E·⌊n/B⌋ (DP-SGD)."""
    clients = fed.scenario.clients
    n, b = len(fed.data.client(client_id)[1]), clients.batch_size
    if fed.scenario.privacy.local_dp is not None and client_id not in fed.malicious:
        return local_steps(n, b, clients.local_epochs)
    return clients.local_epochs * -(-n // b)


@PROBES.register("inversion")
class InversionProbe(Probe):
    """The run's inversion attack, applied in the rounds and to the clients the scenario names.

    Parameters
    ----------
    fed : Federation
        The run's data, model factory and malicious set (the server's own process).
    out_dir : Path, optional
        The run directory; PNG grids go to ``out_dir / "inversion"`` (none without it).
    """

    name = "inversion"
    direction = "model→data"

    def __init__(self, fed: Federation, out_dir: Path | None = None) -> None:
        config = fed.scenario.privacy.inversion
        if config is None:
            raise ValueError("the scenario has no privacy.inversion block")
        self.fed = fed
        self.config = config
        self.out_dir = out_dir
        seed = derive_seed(fed.scenario.seed, Stream.INVERSION) % 2**31
        self.attack = build_inversion(
            config.attack,
            **{"iterations": config.iterations, "restarts": config.restarts, "seed": seed},
            **config.params,
        )
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
        try:
            probe = cls(fed, out_dir)
        except InvalidSettingError as e:
            raise ScenarioError("privacy.inversion.params", config.params, str(e)) from None
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
        """``update`` (the scenario's ``server``) or ``aggregate`` (its ``client``)."""
        return "update" if self.config.threat_model == "server" else "aggregate"

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
        if self.config.threat_model == "server":
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
        for update in targets[: self.config.max_clients]:
            client = update.client_id
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
    ) -> None:
        xs, ys = [], []
        for client, indices in batches:
            x, y = self.fed.data.client(client)
            xs.append(x[indices])
            ys.append(y[indices])
        originals, labels = torch.cat(xs), torch.cat(ys)
        if len(labels) == 0:
            log.info("round %d %s: empty first batch, nothing to reconstruct", server_round, key)
            return
        model = self.fed.model("inversion")
        load_flat_params(model, weights)
        device = next(model.parameters()).device
        pieces = unflatten_like(delta.to(torch.float32).to(device), model)
        target = update_as_gradient(pieces, lr=scale, local_steps=1)
        count = self.config.num_images or min(len(labels), self.scenario.clients.batch_size)
        dataset = self.fed.data.dataset
        with single_thread(device):  # small models: threads only add overhead
            reconstruction = self.attack(
                model,
                target,
                input_shape=tuple(dataset.input_shape),
                num_classes=dataset.num_classes,
                batch_size=count,
                data_range=self.data_range,
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

    def round_metrics(self) -> dict[str, Any]:
        """Scores of the current round: per attacked update, and the mean PSNR/SSIM over them."""
        if not self.round_results:
            return {}
        return {
            "inversion": self.round_results,
            "psnr": _mean(r["psnr"] for r in self.round_results.values()),
            "ssim": _mean(r["ssim"] for r in self.round_results.values()),
        }

    def summary(self) -> dict[str, Any]:
        """Scores over every attacked update of the run, for ``summary.json``."""
        if not self.history:
            return {"inversion_attacks": 0}
        return {
            "inversion_attacks": len(self.history),
            "psnr": _mean(r["psnr"] for r in self.history),
            "best_psnr": max(r["psnr"] for r in self.history),
            "ssim": _mean(r["ssim"] for r in self.history),
            "inversion_label_accuracy": _mean(r["label_accuracy"] for r in self.history),
        }


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
