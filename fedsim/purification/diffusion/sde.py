r"""The variance-preserving SDE (Song et al., ICLR 2021) that diffusion purification runs on.

Forward (noising) SDE on data scaled to [−1, 1], with a linear noise schedule:

.. math:: dx = -\tfrac12 \beta(t)\, x\, dt + \sqrt{\beta(t)}\, dW, \qquad
    \beta(t) = \beta_{\min} + t\,(\beta_{\max} - \beta_{\min}), \quad t \in [0, 1].

Its marginal given :math:`x_0` is Gaussian (Song et al., Eq. 29; DDPM's closed form):

.. math:: x_t = \sqrt{\bar\alpha(t)}\, x_0 + \sqrt{1 - \bar\alpha(t)}\, \varepsilon, \qquad
    \bar\alpha(t) = \exp\!\Bigl(-\beta_{\min} t - \tfrac12 (\beta_{\max} - \beta_{\min}) t^2\Bigr),

with :math:`\varepsilon \sim N(0, I)`. The defaults β_min = 0.1, β_max = 20 are Song et al.'s
(and DiffPure's, Nie et al., ICML 2022).
"""

from __future__ import annotations

import math

import torch

from fedsim.validation import require_real

__all__ = ["VPSDE"]


class VPSDE:
    r"""The VP-SDE's schedule: :math:`\beta(t)`, :math:`\bar\alpha(t)`, marginals, inverse.

    Parameters
    ----------
    beta_min, beta_max : float
        :math:`0 < \beta_{\min} \le \beta_{\max}`.

    Examples
    --------
    >>> sde = VPSDE()
    >>> round(float(sde.alpha_bar(torch.tensor(0.1))), 4)  # exp(-0.01 - 0.5·19.9·0.01)
    0.8963
    >>> t = sde.t_for_noise_ratio(0.5)  # sqrt((1 - ᾱ)/ᾱ) = 0.5 at this t
    >>> a = float(sde.alpha_bar(torch.tensor(t)))
    >>> round(math.sqrt((1 - a) / a), 6)
    0.5
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min = require_real("vp-sde", "beta_min", beta_min, low=0.0, low_open=True)
        self.beta_max = require_real("vp-sde", "beta_max", beta_max, low=self.beta_min)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})`."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\log\bar\alpha(t) = -\int_0^t \beta(s)\,ds`."""
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\bar\alpha(t)`, the squared mean coefficient of the marginal."""
        return torch.exp(self.log_alpha_bar(t))

    def marginal(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`x_t = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\varepsilon` and its std.

        ``t`` is a scalar or one time per sample ``(B,)``; returns ``(x_t, std)`` with ``std``
        :math:`\sqrt{1-\bar\alpha(t)}` shaped to broadcast against ``x0``.
        """
        shape = (-1,) + (1,) * (x0.dim() - 1)
        a = self.alpha_bar(torch.as_tensor(t, dtype=x0.dtype, device=x0.device)).reshape(shape)
        std = torch.sqrt(1.0 - a)
        return torch.sqrt(a) * x0 + std * noise, std

    def t_for_noise_ratio(self, ratio: float) -> float:
        r"""The time t at which :math:`\sqrt{(1-\bar\alpha(t))/\bar\alpha(t)} = r`.

        Rescaled by :math:`1/\sqrt{\bar\alpha}`, :math:`x_t` is :math:`x_0` plus
        :math:`N(0, r^2 I)` noise; this is how denoised smoothing (Carlini et al., ICLR 2023)
        matches the smoothing noise σ. With :math:`L = \log(1 + r^2) = -\log\bar\alpha`, t is
        the positive root of :math:`\tfrac12(\beta_{\max}-\beta_{\min})t^2 + \beta_{\min}t - L`.

        Raises
        ------
        InvalidSettingError
            ``ratio`` ≤ 0, or beyond the ratio the schedule reaches at t = 1.
        """
        r = require_real("vp-sde", "noise ratio", ratio, low=0.0, low_open=True)
        level = math.log1p(r * r)
        slope = self.beta_max - self.beta_min
        if slope == 0:
            t = level / self.beta_min
        else:
            t = (-self.beta_min + math.sqrt(self.beta_min**2 + 2 * slope * level)) / slope
        if t > 1.0:
            top = math.sqrt(math.expm1(-float(self.log_alpha_bar(torch.tensor(1.0)))))
            require_real("vp-sde", "noise ratio", ratio, high=top)
        return t
