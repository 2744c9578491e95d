"""Adaptive clipping for DP-FedAvg: a clip norm that tracks a quantile of the update norms."""

from __future__ import annotations

import math

import torch

from fedsim.errors import InvalidSettingError

__all__ = ["AdaptiveClip"]


class AdaptiveClip:
    r"""Quantile-tracking clip norm for DP-FedAvg (Andrew et al., NeurIPS 2021).

    Each round every client reports :math:`b_i = \mathbb 1[\|\Delta_i\|_2 \le C]`; the server
    releases the noisy fraction of unclipped updates and moves C geometrically toward the
    γ-quantile of the update norms:

    .. math::
        \tilde b = \frac{1}{m}\Big(\sum_{i=1}^{n} \big(b_i - \tfrac12\big)
                   + \mathcal N(0, \sigma_b^2)\Big) + \frac12, \qquad
        C \leftarrow C \cdot \exp\big(-\eta_C(\tilde b - \gamma)\big)

    with n the updates received, m the expected number of clients per round, γ
    ``target_quantile``, η_C ``clip_lr`` and σ_b ``count_noise_multiplier`` (the std of the
    noise on the count; the paper suggests σ_b ≈ m/20). The bits are centred, bᵢ − ½ ∈
    {−½, ½}, so one client moves the noisy sum by at most ½ (as in the paper and TF
    Privacy's quantile estimator); when n = m this is exactly
    :math:`(\sum_i b_i + \mathcal N(0, \sigma_b^2))/m`, the noisy fraction of unclipped updates
    with noise std σ_b/m. Releasing the count costs privacy, so the update itself gets the
    larger noise multiplier

    .. math:: z_\Delta = \big(z^{-2} - (2\sigma_b)^{-2}\big)^{-1/2}

    chosen so that the pair (update: sensitivity S, noise z_Δ S; count: sensitivity ½, noise
    σ_b) composes to one Gaussian mechanism with noise multiplier z, since
    z⁻² = z_Δ⁻² + (2σ_b)⁻². Account for the run with z. This needs σ_b > z/2.

    Parameters
    ----------
    initial_clip : float
        C₀ > 0.
    target_quantile : float
        γ in [0, 1].
    clip_lr : float
        η_C > 0.
    count_noise_multiplier : float
        σ_b ≥ 0 (0 only without update noise, z = 0).

    Examples
    --------
    >>> import math, torch
    >>> ac = AdaptiveClip(1.0, target_quantile=0.5, clip_lr=0.2, count_noise_multiplier=0.0)
    >>> b = ac.update(torch.tensor([5.0, 6.0, 7.0]), expected_clients=3,
    ...               generator=torch.Generator())      # all clipped: b̃ = 0, C grows
    >>> b, round(ac.clip, 6) == round(math.exp(0.1), 6)
    (0.0, True)
    >>> round(AdaptiveClip(1.0, count_noise_multiplier=1.0).effective_noise_multiplier(1.0), 6)
    1.154701

    References
    ----------
    Andrew, Thakkar, McMahan, Ramaswamy. Differentially Private Learning with Adaptive
    Clipping. NeurIPS 2021.
    """

    def __init__(
        self,
        initial_clip: float,
        target_quantile: float = 0.5,
        clip_lr: float = 0.2,
        *,
        count_noise_multiplier: float,
    ) -> None:
        if not (math.isfinite(initial_clip) and initial_clip > 0):
            raise InvalidSettingError(
                f"adaptive clipping needs initial_clip > 0, got {initial_clip!r}"
            )
        if not 0.0 <= target_quantile <= 1.0:
            raise InvalidSettingError(
                f"adaptive clipping needs target_quantile in [0, 1], got {target_quantile!r}"
            )
        if not (math.isfinite(clip_lr) and clip_lr > 0):
            raise InvalidSettingError(f"adaptive clipping needs clip_lr > 0, got {clip_lr!r}")
        if not (math.isfinite(count_noise_multiplier) and count_noise_multiplier >= 0):
            raise InvalidSettingError(
                "adaptive clipping needs count_noise_multiplier >= 0, got "
                f"{count_noise_multiplier!r}"
            )
        self.initial_clip = float(initial_clip)
        self.target_quantile = float(target_quantile)
        self.clip_lr = float(clip_lr)
        self.count_noise_multiplier = float(count_noise_multiplier)
        self.clip = float(initial_clip)

    def effective_noise_multiplier(self, noise_multiplier: float) -> float:
        """z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) for the update, given the total z (0 if z = 0).

        Raises
        ------
        InvalidSettingError
            z > 0 and σ_b ≤ z/2 (the count would use up the whole budget).
        """
        z, sb = float(noise_multiplier), self.count_noise_multiplier
        if z == 0.0:
            return 0.0
        if not 2.0 * sb > z:
            raise InvalidSettingError(
                f"adaptive clipping with noise_multiplier z={z} needs count_noise_multiplier "
                f"sigma_b > z/2 = {z / 2}, got {sb}; Andrew et al. suggest sigma_b = m/20"
            )
        return (z**-2 - (2.0 * sb) ** -2) ** -0.5

    def update(
        self, norms: torch.Tensor, expected_clients: int, generator: torch.Generator
    ) -> float:
        """Move ``self.clip`` toward the target quantile; return the noisy fraction b̃.

        ``norms`` are this round's unclipped update norms, compared with the clip C that
        was used this round (the current ``self.clip``).
        """
        if expected_clients < 1:
            raise InvalidSettingError(f"expected_clients must be >= 1, got {expected_clients}")
        centred = float((norms.to(torch.float64) <= self.clip).sum()) - 0.5 * len(norms)
        if self.count_noise_multiplier > 0:
            noise = torch.randn(
                (), generator=generator, dtype=torch.float64, device=generator.device
            )
            centred += float(noise) * self.count_noise_multiplier
        fraction = centred / expected_clients + 0.5
        self.clip = self.clip * math.exp(-self.clip_lr * (fraction - self.target_quantile))
        return fraction
