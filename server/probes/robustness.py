"""The robustness probe (data → model): the global model's accuracy under evasion attacks.

Configured by the scenario's top-level ``robustness:`` block. In each evaluated round (default:
the last) the probe attacks the global model on a seeded subset of ``samples`` held-out
examples (the server's held-out set, :class:`~server.server_data.ServerData`: FLTrust's root
set is taken out) and reports

- ``robust_accuracy``: attack label → the share of the subset classified correctly both clean
  and under that attack, plus ``worst_case`` (correct under every attack: the per-sample worst
  case of :func:`fedsim.evasion.robust_accuracy`, never the minimum of the per-attack figures);
- ``ece`` and ``ece_adversarial``: expected calibration error on the clean subset and on each
  sample's worst adversarial example;
- ``robustness_clean_accuracy`` (the subset's clean accuracy) and ``robustness_s`` (the
  evaluation's wall time);
- ``attack_success_rate``: attack label → the share of the correctly classified samples its
  examples fool, (clean − robust) / clean;
- with ``transfer``: ``transfer_success_rate``, that share for MI-FGSM crafted on the
  attacker's surrogate(s); its accuracy is in ``robust_accuracy`` as
  ``mifgsm-<norm>-<eps>-transfer``;
- with ``data.tasks``: ``robust_accuracy`` is a mapping task → the mapping above (the first
  task's with the transfer attacker; every other head attacked on its own labels, from the same
  seeded generator, so label-free attacks perturb every task's inputs alike);
- the label-free attackers train first (their seconds count in ``robustness_s``):
  ``task_agnostic`` fits its relation-preserving embedding on the attacker's unlabelled data,
  ``generative`` its generator against agents its ``threat_model`` allows — ``outsider``: the
  transfer surrogates (one cache with MI-FGSM's), ``client``: the global model the client
  received this round and local models it trains from it
  (:class:`~server.probes.evasion_attackers.EvasionAttackers`);
- with ``client_spread``: ``robust_accuracy_clients`` (min / median / max over clients of the
  worst-case robust accuracy on each client's own data);
- with a ``purifier`` other than ``none``: the defended model is f(P(x))
  (:class:`~fedsim.evasion.Purified`). The attacks without ``adaptive`` are *non-adaptive*:
  crafted on the classifier f alone, ignoring P, then evaluated through P; those with
  ``adaptive: bpda_eot`` craft through P (BPDA + EOT, :class:`~fedsim.evasion.BPDAEOT`). Both
  are in ``robust_accuracy`` under their own labels (``pgd-linf-0.1``,
  ``pgd_bpda_eot-linf-0.1``) and ``worst_case`` is the per-sample worst case over all of them
  (so never above any single attack's figure); ``purifier_clean_accuracy`` is the clean
  accuracy through P, while ``robustness_clean_accuracy`` stays the classifier's own. A
  randomized P scores with common random numbers: every attack starts from the round's
  generator state, and the clean pass and every attack's examples go through P with the same
  seeded draws (``_judge``, a stream no attacker draws from), so the same example gets the same
  verdict under every attack;
- with a query-only attack (``square``): ``evasion_queries`` (attack label → mean model
  queries per attacked sample, i.e. per sample classified correctly before the attack); with
  a purifier it queries f(P(x)) itself, so it is adaptive by construction;
- with ``certify``: ``certified_accuracy`` (radius label ``r0.25`` → share certified correct)
  and ``certify_s`` (:mod:`server.probes.certify`), with the per-sample records in
  ``<run dir>/robustness/certify_round<r>.json``;
- with a ``diffusion`` purifier or ``certify.denoiser: diffusion``: ``purifier_s``, the seconds
  the server spent training the score model, in the first evaluated round (it is trained once
  per run, seeded, and kept). By default (``params.training: server``) the **server** trains
  it, on its public pool: the held-out examples outside both the attacked and the certified
  subsets. Server-side because the purifier is a test-time defence of the deployed model, not
  of any client; it needs no client data (so no privacy cost to clients and no poisoning by
  malicious clients), and the server already holds this pool. With ``training: federated``
  the clients train it instead, FedAvg over their own partitions (the scenario's, so non-IID
  under ``dirichlet`` or ``shards``; :meth:`~fedsim.purification.DiffusionPurifier.
  fit_federated`): the probe reads each client's partition from the federation's data, as
  ``client_spread`` does, because in this simulator the server process plays every client's
  local training; only the averaged weights reach the purifier. The clients' partitions are
  the honest ones: a malicious client poisoning the purifier is not simulated.

``summary.json`` gets ``final_robust_accuracy`` (the last evaluated round's worst case),
``final_robust_accuracy_<label>`` per attack, ``final_ece`` and, with ``certify``,
``final_certified_accuracy`` (the last evaluated round's mapping). Per evaluated round,
``<run dir>/robustness/round<r>_reliability.png`` draws the reliability diagrams of the clean
subset and of each sample's worst adversarial example (the two behind ``ece`` and
``ece_adversarial``), with a legend; ``round<r>_reliability.json`` holds their bins.

Threat model ``global_model`` (white-box). The *insider* — a malicious client crafting
adversarial inputs on the global model it received — is white-box by construction, so it is
this same figure. The transfer attacker is weaker (black-box): it never sees the weights.

Attacks run in [0, 1] pixel space: a normalised dataset's examples are mapped back with
:func:`~fedsim.evasion.to_pixel_space` and the model wrapped with
:func:`~fedsim.evasion.model_in_pixel_space`.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.evasion import (
    EvasionAttack,
    OnClassifier,
    Purified,
    RobustAccuracy,
    Square,
    model_in_pixel_space,
    plot_reliability,
    robust_accuracy,
    to_pixel_space,
)
from fedsim.federation import Federation
from fedsim.params import load_flat_params
from fedsim.purification import DiffusionPurifier, Purifier
from fedsim.results import write_json_atomic
from fedsim.scenario.robustness import RobustnessConfig
from fedsim.seeding import Stream, torch_generator
from fedsim.training import single_thread
from server.probes.base import PROBES, Probe, RoundView, check_rounds
from server.probes.certify import Certification
from server.probes.evasion_attackers import EvasionAttackers, surrogate_model
from server.server_data import ServerData

__all__ = ["RobustnessProbe"]

log = logging.getLogger(__name__)


@PROBES.register("robustness")
class RobustnessProbe(Probe):
    """Robust accuracy and calibration of the global model under the configured attacks.

    Parameters
    ----------
    fed : Federation
        The run's data and model factory (the server's own process).
    data : ServerData
        The server's held-out set (FLTrust's root set taken out): the attacked subset and
        the transfer attacker's public examples are drawn from it.
    out_dir : Path, optional
        The run directory; reliability diagrams go to ``out_dir / "robustness"``.

    Raises
    ------
    InvalidSettingError
        The ``robustness`` block is missing, or the transfer attacker's data is empty.
    """

    name = "robustness"
    direction = "data→model"

    def __init__(self, fed: Federation, data: ServerData, out_dir: Path | None = None) -> None:
        config = fed.scenario.robustness
        if config is None:
            raise InvalidSettingError("the scenario has no robustness block")
        self.fed, self.config, self.out_dir = fed, config, out_dir
        dataset = fed.data.dataset
        self.held_out = x, y = data.held_out
        order = torch.randperm(
            len(y), generator=torch_generator(fed.scenario.seed, Stream.ROBUSTNESS)
        )

        def first(count: int) -> tuple[torch.Tensor, torch.Tensor]:
            """The first ``count`` examples of the seeded order (in held-out order, pixels)."""
            chosen = order[:count].sort().values
            return to_pixel_space(x[chosen], dataset.mean, dataset.std), y[chosen]

        count = min(config.samples, len(y))
        if count < config.samples:
            log.info("robustness: %d samples asked, the held-out set has %d", config.samples, count)
        self.x, self.y = first(count)
        self.public = order[count:]  # held-out examples outside the subset (transfer: public)
        self.purifier = config.purifier.build()
        certified = 0 if config.certify is None else min(config.certify.samples, len(y))
        # The diffusion model the server trains (purifier, or denoised smoothing's denoiser) on
        # its public pool: the held-out examples neither attacked nor certified.
        self.diffusion = _diffusion_model(self.purifier, config)
        pool = order[max(count, certified) :].sort().values
        self.diffusion_pool = to_pixel_space(x[pool], dataset.mean, dataset.std)
        self.purified = config.purifier.name != "none"
        self.attacks: list[EvasionAttack] = [a.build(self.purifier) for a in config.attacks]
        if self.purified:  # non-adaptive and BPDA + EOT both craft on f; judged on f(P(x))
            # a query-only attack (square) needs no gradient: it queries f(P(x)) itself
            self.attacks = [a if a.query_only else OnClassifier(a) for a in self.attacks]
        self.certification: Certification | None = None
        if config.certify is not None:  # its own seeded subset of the held-out set
            denoiser = self.diffusion if config.certify.denoiser == "diffusion" else None
            self.certification = Certification(
                config.certify, *first(certified), fed.scenario.seed, denoiser
            )
        self.attackers = EvasionAttackers(fed, config, self.held_out, self.public)
        self.transfer_label: str | None = None
        self.last: dict[str, Any] = {}

    @classmethod
    def from_scenario(
        cls, fed: Federation, data: ServerData, out_dir: Path | None = None
    ) -> RobustnessProbe | None:
        """The probe ``robustness`` asks for (``None`` without that block).

        Raises
        ------
        ScenarioError
            Rounds past the run's end, a transfer client outside the federation, an unknown
            surrogate model, or no held-out examples left for a public-data transfer attacker.
        """
        config, scenario = fed.scenario.robustness, fed.scenario
        if config is None:
            return None
        check_rounds("robustness.rounds", config.rounds, scenario.rounds)
        transfer = config.transfer
        if transfer is not None:
            n = scenario.data.num_clients
            if transfer.data == "client" and not transfer.client < n:
                raise ScenarioError("robustness.transfer.client", transfer.client, f"0..{n - 1}")
            for index, name in enumerate(transfer.surrogates):
                try:
                    surrogate_model(fed, name)
                except InvalidSettingError as e:
                    raise ScenarioError(
                        f"robustness.transfer.surrogates.{index}", name, str(e)
                    ) from None
        probe = cls(fed, data, out_dir)
        server_trained = probe.diffusion is not None and probe.diffusion.training == "server"
        if server_trained and not len(probe.diffusion_pool):
            raise ScenarioError(
                "robustness.samples",
                config.samples,
                "fewer than the held-out samples (and robustness.certify.samples too), so the "
                "server keeps a public pool to train the diffusion model on",
            )
        public = transfer is None or transfer.data == "public"
        if public and probe.attackers.needs_public_data(probe.attacks) and not len(probe.public):
            raise ScenarioError(
                "robustness.samples",
                config.samples,
                f"fewer than the {len(probe.y)} held-out samples, so the outside attacker's "
                "public data (the rest) is not empty",
            )
        return probe

    @property
    def threat_model(self) -> str:
        """``global_model``: white-box (any client, including an insider, or a leaked copy)."""
        return "global_model"

    @property
    def rounds(self) -> list[int]:
        """The evaluated rounds (``robustness.rounds``; default the run's last)."""
        rounds = self.config.rounds
        return [self.fed.scenario.rounds] if rounds is None else list(rounds)

    def observe(self, view: RoundView) -> dict[str, Any]:
        """Attack the global model of ``view.round`` on the subset; return the figures."""
        config, fed = self.config, self.fed
        dataset = fed.data.dataset
        model = fed.model("robustness")
        load_flat_params(model, view.model)
        device = next(model.parameters()).device
        pixel_model = model_in_pixel_space(model, dataset.mean, dataset.std).to(device)
        defended = self._defended(pixel_model, view.round)
        attacks = list(self.attacks)
        trained: dict[str, Any] = {}
        with single_thread(device):
            if self.diffusion is not None and not self.diffusion.trained:
                trained["purifier_s"] = self._train_diffusion(device)
            start = time.perf_counter()  # the attackers' training (surrogates, agents) counts
            if config.transfer is not None:
                transfer = self.attackers.transfer_attack(device)
                self.transfer_label = transfer.label
                attacks.append(transfer)
            self.attackers.fit(self.attacks, view, device)
            x, y = self.x.to(device), self.y.to(device)
            generator = torch_generator(fed.scenario.seed, Stream.ROBUSTNESS, view.round)
            queried = [a for a in attacks if isinstance(a, Square)]
            for attack in queried:
                attack.reset_queries()
            result = robust_accuracy(
                defended,
                x,
                y,
                attacks,
                generator,
                config.batch_size,
                judge=self._judge(pixel_model, view.round),
            )
            figures: dict[str, Any] = {
                "robust_accuracy": result.figures(),
                "attack_success_rate": {
                    label: (result.clean - value) / result.clean if result.clean else 0.0
                    for label, value in result.per_attack.items()
                },
                "robustness_clean_accuracy": result.clean,
                "ece": result.ece,
                "ece_adversarial": result.ece_adversarial,
            }
            if self.purified:
                figures["purifier_clean_accuracy"] = result.clean
                figures["robustness_clean_accuracy"] = _accuracy(pixel_model, x, y)
            if queried:  # mean model queries per attacked sample, per query-only attack
                figures["evasion_queries"] = {a.label: a.mean_queries for a in queried}
            if self.transfer_label is not None:
                figures["transfer_success_rate"] = figures["attack_success_rate"][
                    self.transfer_label
                ]
            if fed.tasks is not None:
                figures["robust_accuracy"] = self._per_task(result, x, y, view.round)
            if config.client_spread is not None:
                figures["robust_accuracy_clients"] = self._client_spread(
                    defended, device, view.round
                )
            figures["robustness_s"] = time.perf_counter() - start
            figures.update(trained)
            if self.certification is not None:
                figures.update(self.certification(pixel_model, view.round, self.out_dir))
            if config.save_plots and self.out_dir is not None:
                self._plot(result, view.round)
        log.info("round %d robustness: %s", view.round, figures)
        self.last = figures
        return figures

    def _per_task(
        self,
        first: RobustAccuracy,
        x: torch.Tensor,
        y: torch.Tensor,
        server_round: int,
    ) -> dict[str, dict[str, float]]:
        """``robust_accuracy`` per task: task → the usual mapping (multi-task runs).

        The first task's is ``first`` (the run's single-task view, with the transfer attacker);
        every other task's head is attacked with the configured attacks on its own labels
        (a gradient attack is then task-specific), each task from the same seeded generator,
        so a label-free attack (``task_agnostic``, ``generative``, ``noise``) perturbs every
        task's inputs identically. The transfer attacker's surrogates know the first task only.
        """
        fed, dataset = self.fed, self.fed.data.dataset
        multitask = fed.multitask("robustness")
        if fed.tasks is None or multitask is None:
            raise InvalidSettingError("per-task robust accuracy needs a multi-task federation")
        out = {fed.tasks.names[0]: first.figures()}
        for task in fed.tasks.names[1:]:
            head = model_in_pixel_space(multitask.as_single_task(task), dataset.mean, dataset.std)
            generator = torch_generator(fed.scenario.seed, Stream.ROBUSTNESS, server_round)
            result = robust_accuracy(
                self._defended(head.to(x.device), server_round),
                x,
                fed.tasks.labels(task, y),
                self.attacks,
                generator,
                self.config.batch_size,
                judge=self._judge(head.to(x.device), server_round),
            )
            out[task] = result.figures()
        return out

    def _defended(self, pixel_model: nn.Module, server_round: int) -> nn.Module:
        """f(P(x)) with a purifier (a randomized one draws from a per-round stream), else f."""
        if not self.purified:
            return pixel_model
        generator = torch_generator(self.fed.scenario.seed, Stream.ROBUSTNESS, server_round, 5)
        return Purified(pixel_model, self.purifier, generator)

    def _judge(self, pixel_model: nn.Module, server_round: int) -> nn.Module:
        """What every attack's examples are scored by: f(P(x)) with the round's fixed draws.

        Common random numbers: the purifier draw that scores sample i comes from one seeded
        evaluation stream (seed, round), restarted for every scoring pass, so it is the same
        for the clean pass and for every attack, whatever the attack order, and never one the
        attackers drew from (theirs is the round's attack generator, and Square queries
        :meth:`_defended`'s stream).
        """
        if not self.purified:
            return pixel_model
        generator = torch_generator(self.fed.scenario.seed, Stream.ROBUSTNESS, server_round, 9)
        return Purified(pixel_model, self.purifier, generator, fixed_draws=True)

    def _train_diffusion(self, device: torch.device) -> float:
        """Train the diffusion model once per run (seeded) on the public pool; seconds taken."""
        if self.diffusion is None:
            raise InvalidSettingError("the robustness block has no diffusion model")
        fed = self.fed
        generator = torch_generator(fed.scenario.seed, Stream.ROBUSTNESS, 0, 6)
        if self.diffusion.training == "federated":
            # The simulator reads each client's partition to run that client's local steps
            # (as the local-training loop does); in a deployment the clients would run them.
            dataset = fed.data.dataset
            clients = [
                to_pixel_space(fed.data.client(k)[0], dataset.mean, dataset.std).to(device)
                for k in range(fed.scenario.data.num_clients)
            ]
            client_generators = [
                torch_generator(fed.scenario.seed, Stream.ROBUSTNESS, 0, 10, k)
                for k in range(len(clients))
            ]
            seconds = self.diffusion.fit_federated(clients, generator, client_generators)
            log.info(
                "robustness: diffusion model trained by FedAvg over %d clients (%d examples) "
                "in %.1f s",
                len(clients),
                sum(len(c) for c in clients),
                seconds,
            )
            return seconds
        seconds = self.diffusion.fit(self.diffusion_pool.to(device), generator)
        log.info(
            "robustness: diffusion model trained on %d public examples in %.1f s",
            len(self.diffusion_pool),
            seconds,
        )
        return seconds

    def _client_spread(
        self, pixel_model: nn.Module, device: torch.device, server_round: int
    ) -> dict[str, float]:
        """Worst-case robust accuracy on each client's own data: min / median / max."""
        config, fed = self.config, self.fed
        dataset = fed.data.dataset
        values = []
        for client in range(fed.scenario.data.num_clients):
            x, y = fed.data.client(client)
            if not len(y):
                continue
            pick = torch.randperm(
                len(y),
                generator=torch_generator(fed.scenario.seed, Stream.ROBUSTNESS, 0, 3, client),
            )[: config.client_spread]
            x = to_pixel_space(x[pick], dataset.mean, dataset.std).to(device)
            generator = torch_generator(
                fed.scenario.seed, Stream.ROBUSTNESS, server_round, 3, client
            )
            result = robust_accuracy(
                pixel_model, x, y[pick].to(device), self.attacks, generator, config.batch_size
            )
            values.append(result.worst_case)
        if not values:
            return {}
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    def _plot(self, result: RobustAccuracy, round_: int) -> None:
        """The round's reliability diagrams, clean and adversarial: a PNG and its data (JSON)."""
        diagrams = {
            "clean": result.reliability,
            "adversarial (worst attack per sample)": result.reliability_adversarial,
        }
        folder = self.out_dir / self.name  # type: ignore[operator]
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"round{round_:03d}_reliability"
        plot_reliability(diagrams, stem.with_suffix(".png"), f"round {round_}")
        write_json_atomic(
            stem.with_suffix(".json"),
            {name: {**asdict(d), "ece": d.ece} for name, d in diagrams.items()},
        )

    def summary(self) -> dict[str, Any]:
        """``final_robust_accuracy`` (worst case) and ``final_robust_accuracy_<label>`` per attack.

        Flat numbers, so a sweep's ``results.csv`` and report tabulate each attack's figure;
        with ``data.tasks`` they are the first task's, and ``final_robust_accuracy_per_task``
        is the whole task → mapping.
        """
        if not self.last:
            return {}
        robust = self.last["robust_accuracy"]
        out: dict[str, Any] = {}
        if self.fed.tasks is not None:  # task → mapping: the flat keys read the first task's
            out["final_robust_accuracy_per_task"] = dict(robust)
            robust = robust[self.fed.tasks.names[0]]
        out["final_robust_accuracy"] = robust["worst_case"]
        out.update(
            {f"final_robust_accuracy_{k}": v for k, v in robust.items() if k != "worst_case"}
        )
        if "purifier_clean_accuracy" in self.last:
            out["final_purifier_clean_accuracy"] = self.last["purifier_clean_accuracy"]
        if "certified_accuracy" in self.last:
            out["final_certified_accuracy"] = dict(self.last["certified_accuracy"])
        return out

    def state_dict(self) -> dict[str, Any]:
        """The last evaluated round's figures (the summary reads them after a resume)."""
        return {"last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the last evaluated round's figures."""
        self.last = dict(state.get("last", {}))


def _diffusion_model(purifier: Purifier, config: RobustnessConfig) -> DiffusionPurifier | None:
    """The diffusion model to train: the purifier's, or a default one for the denoiser."""
    if isinstance(purifier, DiffusionPurifier):
        return purifier
    if config.certify is not None and config.certify.denoiser == "diffusion":
        return DiffusionPurifier()
    return None


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Clean accuracy of ``model`` on ``(x, y)`` (eval mode, restored)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float((model(x).argmax(dim=1) == y).sum()) / max(len(y), 1)
    finally:
        model.train(training)
