"""Client-level DP on the server: DP-FedAvg with fixed or adaptive clipping, and its accounting.

The mechanism works on an ``(n, d)`` float64 matrix of client deltas ``Δᵢ = wᵢ − w_global``
and knows nothing of Flower. Its two parts live on one class (:class:`DPFedAvg`): the
client-side clip (:meth:`DPFedAvg.client_step`) and the server-side noise
(:meth:`DPFedAvg.server_step`); the clip norm may adapt
(:class:`~fedsim.privacy.adaptive_clip.AdaptiveClip`). Noise calibrated for this *mean* is not
calibrated for a robust rule (Krum's sensitivity is up to S); use it with FedAvg only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from fedsim.clipping import clip_to_norm
from fedsim.errors import InvalidSettingError
from fedsim.privacy.adaptive_clip import AdaptiveClip
from fedsim.privacy.ledger import (
    AccountantName,
    _check_accountant,
    _check_delta,
    epsilon_from_history,
)

__all__ = [
    "Amplification",
    "CentralAccountant",
    "CentralDPResult",
    "DPFedAvg",
    "central_epsilon",
    "central_sample_rate",
    "clip_updates",
]

logger = logging.getLogger(__name__)

Amplification = Literal["poisson", "none"]


def clip_updates(updates: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scale each update to L2 norm at most S: :math:`\Delta_i \min(1, S / \|\Delta_i\|_2)`.

    Parameters
    ----------
    updates : torch.Tensor
        ``(n, d)`` client deltas (converted to float64).
    clip : float
        S > 0.

    Returns
    -------
    clipped : torch.Tensor
        ``(n, d)`` float64, every row of norm ≤ S (zero rows stay zero).
    norms : torch.Tensor
        ``(n,)`` float64 norms :math:`\|\Delta_i\|_2` before clipping.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    >>> clipped, norms = clip_updates(u, 1.0)
    >>> clipped.round(decimals=6).tolist(), norms.tolist()
    ([[0.6, 0.8, 0.0], [0.3, 0.4, 0.0], [0.0, 0.0, 1.0]], [5.0, 0.5, 2.0])
    """
    if not (math.isfinite(clip) and clip > 0):
        raise InvalidSettingError(f"clipping needs a finite clip norm S > 0, got {clip!r}")
    if updates.ndim != 2:
        raise InvalidSettingError(
            f"updates must be an (n, d) matrix, got shape {tuple(updates.shape)}"
        )
    return clip_to_norm(updates.to(torch.float64), clip)


@dataclass(frozen=True)
class CentralDPResult:
    """One round of DP-FedAvg.

    Attributes
    ----------
    update : torch.Tensor
        ``(d,)`` float64 noisy mean update.
    noise_std : float
        Std of the noise on each coordinate of ``update``: z_Δ·C/m.
    info : dict[str, float]
        ``clip`` (C used), ``noise_multiplier`` (z_Δ used on the update), ``clipped_fraction``
        (exact share of this round's updates that were clipped; a diagnostic, not private),
        and with adaptive clipping ``unclipped_fraction_noisy`` (b̃) and ``next_clip``.
    """

    update: torch.Tensor
    noise_std: float
    info: dict[str, float]


class DPFedAvg:
    r"""Client-level DP mean of client updates (DP-FedAvg; McMahan et al., ICLR 2018).

    .. math::
        \bar\Delta = \frac{1}{m}\Big(\sum_{i=1}^{n}
                     \Delta_i \min\big(1, \tfrac{S}{\|\Delta_i\|_2}\big)
                     + \mathcal N(0, z^2 S^2 I_d)\Big)

    with n the updates received this round, m the *expected* number of clients per round
    (a fixed denominator, so one client changes the sum by at most S), S the clip norm and
    z the noise multiplier. The output noise std per coordinate is zS/m. With an
    :class:`AdaptiveClip`, S is its current C, the update uses z_Δ (see there) and C is
    updated after the round; z stays the multiplier to account with.

    Parameters
    ----------
    noise_multiplier : float
        z ≥ 0 (0: clipping only, no privacy).
    clip : float or AdaptiveClip
        S > 0, or an adaptive clip whose state lives for the whole run.
    expected_clients : int
        m ≥ 1.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> mech = DPFedAvg(noise_multiplier=0.0, clip=4.0, expected_clients=3)
    >>> r = mech(u, torch.Generator().manual_seed(0))   # only the last row (norm √38) is clipped
    >>> r.update.round(decimals=4).tolist(), r.noise_std
    ([2.4148, 0.6489, 1.7659], 0.0)
    >>> DPFedAvg(noise_multiplier=1.0, clip=4.0, expected_clients=3)(u, torch.Generator()).noise_std
    1.3333333333333333

    References
    ----------
    McMahan, Ramage, Talwar, Zhang. Learning Differentially Private Recurrent Language
    Models. ICLR 2018.
    Andrew, Thakkar, McMahan, Ramaswamy. Differentially Private Learning with Adaptive
    Clipping. NeurIPS 2021.
    """

    name = "dp_fedavg"

    def __init__(
        self, noise_multiplier: float, clip: float | AdaptiveClip, expected_clients: int
    ) -> None:
        if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
            raise InvalidSettingError(
                f"dp_fedavg needs noise_multiplier z >= 0, got {noise_multiplier!r}"
            )
        if (
            isinstance(expected_clients, bool)
            or int(expected_clients) != expected_clients
            or (expected_clients < 1)
        ):
            raise InvalidSettingError(
                f"dp_fedavg needs expected_clients m >= 1, got {expected_clients!r}"
            )
        self.noise_multiplier = float(noise_multiplier)
        self.expected_clients = int(expected_clients)
        if isinstance(clip, AdaptiveClip):
            self.adaptive: AdaptiveClip | None = clip
            self._fixed_clip = clip.initial_clip
            clip.effective_noise_multiplier(self.noise_multiplier)  # validates σ_b > z/2
        else:
            if not (math.isfinite(clip) and clip > 0):
                raise InvalidSettingError(f"dp_fedavg needs clip S > 0, got {clip!r}")
            self.adaptive = None
            self._fixed_clip = float(clip)

    @property
    def clip(self) -> float:
        """The clip norm S used for the next round."""
        return self.adaptive.clip if self.adaptive is not None else self._fixed_clip

    @property
    def update_noise_multiplier(self) -> float:
        """Noise multiplier applied to the update: z, or z_Δ with adaptive clipping."""
        if self.adaptive is None:
            return self.noise_multiplier
        return self.adaptive.effective_noise_multiplier(self.noise_multiplier)

    def client_step(self, updates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Client-side hook: clip each update to S; return ``(clipped, norms)``."""
        return clip_updates(updates, self.clip)

    def server_step(
        self,
        clipped: torch.Tensor,
        norms: torch.Tensor,
        generator: torch.Generator,
        aggregate: torch.Tensor | None = None,
    ) -> CentralDPResult:
        """Server-side hook: sum the clipped updates, add noise, divide by m; adapt C.

        Noise is drawn from ``generator``: first the d update coordinates, then (adaptive
        clipping) the count noise. With ``aggregate`` (a robust rule's output on the clipped
        updates) the result is ``aggregate + N(0, z²S²)/m`` instead of the noisy mean: the same
        noise std zS/m, but calibrated for the mean's sensitivity S/m, not the rule's.

        Raises
        ------
        InvalidSettingError
            A row of ``clipped`` exceeds S (the client hook was skipped).
        """
        clip = self.clip
        clipped = clipped.to(torch.float64)
        if clipped.ndim != 2 or norms.shape != (clipped.shape[0],):
            raise InvalidSettingError(
                f"dp_fedavg needs (n, d) clipped updates and (n,) norms, got "
                f"{tuple(clipped.shape)} and {tuple(norms.shape)}"
            )
        if bool((torch.linalg.vector_norm(clipped, dim=1) > clip * (1 + 1e-9)).any()):
            raise InvalidSettingError(
                f"dp_fedavg got an update of norm above S={clip}; clip with client_step first"
            )
        z = self.update_noise_multiplier
        std = z * clip
        m = self.expected_clients
        total = clipped.sum(dim=0) if aggregate is None else aggregate.to(torch.float64) * m
        if std > 0:
            noise = torch.randn(
                total.shape, generator=generator, dtype=torch.float64, device=generator.device
            )
            total = total + std * noise.to(total.device)
        info = {
            "clip": clip,
            "noise_multiplier": z,
            "noise_std": std / m,
            "clipped_fraction": float((norms > clip).double().mean()) if len(norms) else 0.0,
        }
        if self.adaptive is not None:
            info["unclipped_fraction_noisy"] = self.adaptive.update(norms, m, generator)
            info["next_clip"] = self.adaptive.clip
        logger.debug("dp_fedavg: %s", info)
        return CentralDPResult(update=total / m, noise_std=std / m, info=info)

    def __call__(self, updates: torch.Tensor, generator: torch.Generator) -> CentralDPResult:
        """Both hooks: clip every update to S, then noise the sum (see the class formula)."""
        clipped, norms = self.client_step(updates)
        return self.server_step(clipped, norms, generator)

    def describe(self) -> str:
        """One line naming the mechanism and its settings, for the run log."""
        clip = (
            f"adaptive(C0={self.adaptive.initial_clip}, gamma={self.adaptive.target_quantile}, "
            f"eta={self.adaptive.clip_lr}, sigma_b={self.adaptive.count_noise_multiplier})"
            if self.adaptive is not None
            else repr(self._fixed_clip)
        )
        return f"{self.name}(z={self.noise_multiplier}, clip={clip}, m={self.expected_clients})"


def central_sample_rate(
    expected_clients: int, num_clients: int, amplification: Amplification
) -> float:
    """Client sampling rate to account with: q = m/N under ``"poisson"``, 1 under ``"none"``.

    Amplification by sampling holds only if the server samples clients independently
    (Poisson) from the population; ``"none"`` is the safe choice otherwise.

    Examples
    --------
    >>> central_sample_rate(10, 100, "poisson"), central_sample_rate(10, 100, "none")
    (0.1, 1.0)
    """
    if not 1 <= expected_clients <= num_clients:
        raise InvalidSettingError(
            f"central DP needs 1 <= expected_clients <= num_clients, got m={expected_clients}, "
            f"N={num_clients}"
        )
    if amplification == "poisson":
        return expected_clients / num_clients
    if amplification == "none":
        return 1.0
    raise InvalidSettingError(f"unknown amplification {amplification!r}; known: none, poisson")


def central_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    rounds: int,
    delta: float,
    accountant: AccountantName = "rdp",
) -> float:
    """Client-level ε of ``rounds`` rounds of DP-FedAvg (one Gaussian step per round).

    Parameters
    ----------
    noise_multiplier : float
        z (the total one, also with adaptive clipping).
    sample_rate : float
        q from :func:`central_sample_rate`.
    rounds : int
        Rounds run (0 gives 0.0).
    delta : float
        δ in (0, 1), typically below 1/N.
    accountant : {"rdp", "prv"}
        Opacus accountant.

    Examples
    --------
    >>> central_epsilon(1.0, 0.1, 0, 1e-5)
    0.0
    >>> central_epsilon(1.0, 0.1, 50, 1e-5) < central_epsilon(1.0, 1.0, 50, 1e-5)
    True
    """
    if int(rounds) != rounds or rounds < 0:
        raise InvalidSettingError(f"rounds must be an integer >= 0, got {rounds!r}")
    return epsilon_from_history([(noise_multiplier, sample_rate, int(rounds))], delta, accountant)


class CentralAccountant:
    """Client-level privacy spent by DP-FedAvg so far, one composed step per round.

    Parameters
    ----------
    noise_multiplier : float
        z ≥ 0.
    sample_rate : float
        q in (0, 1] (:func:`central_sample_rate`).
    delta : float
        δ in (0, 1).
    accountant : {"rdp", "prv"}
        Opacus accountant.
    rounds : int
        Rounds already run (when restoring).

    Examples
    --------
    >>> acc = CentralAccountant(1.0, 0.1, delta=1e-5)
    >>> acc.epsilon()
    0.0
    >>> acc.record_round()
    >>> acc.epsilon() < acc.epsilon_after(1) == central_epsilon(1.0, 0.1, 2, 1e-5)
    True
    >>> CentralAccountant.from_list(acc.to_list()).rounds
    1
    """

    def __init__(
        self,
        noise_multiplier: float,
        sample_rate: float,
        delta: float,
        accountant: AccountantName = "rdp",
        rounds: int = 0,
    ) -> None:
        if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
            raise InvalidSettingError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
        if not 0.0 < sample_rate <= 1.0:
            raise InvalidSettingError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        _check_delta(delta)
        _check_accountant(accountant)
        if int(rounds) != rounds or rounds < 0:
            raise InvalidSettingError(f"rounds must be an integer >= 0, got {rounds!r}")
        self.noise_multiplier = float(noise_multiplier)
        self.sample_rate = float(sample_rate)
        self.delta = float(delta)
        self.accountant = accountant
        self.rounds = int(rounds)

    def record_round(self) -> None:
        """Account for one more round of the mechanism."""
        self.rounds += 1

    def epsilon(self) -> float:
        """ε after the rounds recorded so far."""
        return self.epsilon_after(0)

    def epsilon_after(self, extra_rounds: int = 1) -> float:
        """ε if ``extra_rounds`` more rounds ran (for a budget check before a round)."""
        if int(extra_rounds) != extra_rounds or extra_rounds < 0:
            raise InvalidSettingError(f"extra_rounds must be an integer >= 0, got {extra_rounds!r}")
        return central_epsilon(
            self.noise_multiplier,
            self.sample_rate,
            self.rounds + int(extra_rounds),
            self.delta,
            self.accountant,
        )

    def to_list(self) -> list[float]:
        """``[z, q, δ, rounds]`` as floats (the accountant name is a setting, not state)."""
        return [self.noise_multiplier, self.sample_rate, self.delta, float(self.rounds)]

    @classmethod
    def from_list(
        cls, values: Sequence[float], accountant: AccountantName = "rdp"
    ) -> CentralAccountant:
        """Rebuild from :meth:`to_list` output."""
        if len(values) != 4:
            raise InvalidSettingError(
                f"a central accountant list is [z, q, delta, rounds], got {len(values)} values"
            )
        z, q, delta, rounds = values
        return cls(float(z), float(q), float(delta), accountant, rounds=int(rounds))
