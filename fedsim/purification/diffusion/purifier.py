r"""The ``diffusion`` purifier: diffuse to t*, then reverse (DiffPure, Nie et al., ICML 2022).

.. math:: P(x) = \tfrac12\Bigl(R\bigl(\sqrt{\bar\alpha(t^*)}\,(2x - 1)
    + \sqrt{1-\bar\alpha(t^*)}\,\varepsilon,\; t^*\bigr) + 1\Bigr), \quad
    \varepsilon \sim N(0, I),

clipped to [0, 1], where R is the reverse sampler from t* to 0 on the data scale [−1, 1]
(:mod:`~fedsim.purification.diffusion.samplers`): ``sde`` (Euler–Maruyama on the reverse SDE,
DiffPure's) or ``ode`` (the probability-flow ODE with few DDIM steps, the fast sampler). The
noise :math:`\varepsilon` drowns a small adversarial perturbation; the score model pulls the
result back to the data manifold. The purifier is randomized (the draws come from the caller's
generator); too small a t* leaves the perturbation in (REFERENCE.md: 0 % robust accuracy).

The score network has to be **trained** first: ``training: server`` (the default,
:meth:`DiffusionPurifier.fit`) on a pool the server holds — fedsim's robustness probe uses the
held-out public pool, never the samples it evaluates (:mod:`server.probes.robustness`) — or
``training: federated`` (:meth:`DiffusionPurifier.fit_federated`), FedAvg over the clients'
own images (:mod:`~fedsim.purification.diffusion.federated`). :meth:`denoise` is the
one-shot denoiser of denoised smoothing (Carlini et al., ICLR 2023).
"""

from __future__ import annotations

import copy
import time

import torch

from fedsim.errors import InvalidSettingError
from fedsim.purification.base import Purifier
from fedsim.purification.diffusion.federated import federated_score_training
from fedsim.purification.diffusion.samplers import one_shot, probability_flow, reverse_sde
from fedsim.purification.diffusion.score_net import ScoreNet
from fedsim.purification.diffusion.sde import VPSDE
from fedsim.purification.diffusion.training import train_score_net
from fedsim.purification.registry import PURIFIERS
from fedsim.validation import require_int, require_real

__all__ = ["DiffusionPurifier"]

SAMPLERS = ("sde", "ode")
TRAINING = ("server", "federated")
DEFAULT_STEPS = {"sde": 100, "ode": 5}


@PURIFIERS.register("diffusion")
class DiffusionPurifier(Purifier):
    r"""Score-based diffusion purification with an SDE or a fast ODE sampler.

    Parameters
    ----------
    t_star : float
        Diffusion time t* in (0, 1]; the forward noise std on [−1, 1] is
        :math:`\sqrt{1-\bar\alpha(t^*)}` (0.32 at the default 0.1 … 0.57 at 0.2).
    sampler : {"sde", "ode"}
        Reverse sampler: Euler–Maruyama on the reverse SDE, or DDIM on the probability-flow
        ODE (the fast one).
    steps : int or None
        Sampler steps from t* to 0 (default: 100 for ``sde``, 5 for ``ode``).
    width : int
        The score network's feature channels (:class:`ScoreNet`).
    train_steps, batch_size, lr : int, int, float
        Denoising score matching (:func:`train_score_net`): Adam steps, batch, learning rate
        (``batch_size`` and ``lr`` are each client's with federated training).
    training : {"server", "federated"}
        Who trains the score network: the server on its own pool (:meth:`fit`), or the
        clients by FedAvg (:meth:`fit_federated`).
    fed_rounds, local_steps : int
        Federated training's R rounds of E local steps per client (``train_steps`` is then
        unused).
    beta_min, beta_max : float
        The VP-SDE's linear schedule (:class:`VPSDE`).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> digits = (torch.rand(8, 1, 8, 8, generator=g) > 0.5).float()
    >>> p = DiffusionPurifier(t_star=0.1, train_steps=2, width=8, batch_size=8)
    >>> p.fit(digits, torch.Generator().manual_seed(1)) > 0  # seconds spent training
    True
    >>> out = p(digits[:2], torch.Generator().manual_seed(2))
    >>> out.shape, bool(out.min() >= 0 and out.max() <= 1)
    (torch.Size([2, 1, 8, 8]), True)
    >>> DiffusionPurifier(sampler="heun")
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: diffusion needs sampler one of sde, ode, got 'heun'
    """

    name = "diffusion"
    randomized = True

    def __init__(
        self,
        t_star: float = 0.15,
        sampler: str = "ode",
        steps: int | None = None,
        width: int = 16,
        train_steps: int = 1500,
        batch_size: int = 64,
        lr: float = 2e-3,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        training: str = "server",
        fed_rounds: int = 60,
        local_steps: int = 10,
    ) -> None:
        rule = self.name
        self.t_star = require_real(rule, "t_star", t_star, low=0.0, high=1.0, low_open=True)
        if sampler not in SAMPLERS:
            raise InvalidSettingError(
                f"{rule} needs sampler one of {', '.join(SAMPLERS)}, got {sampler!r}"
            )
        self.sampler = sampler
        self.steps = require_int(
            rule, "steps", DEFAULT_STEPS[sampler] if steps is None else steps, minimum=1
        )
        self.width = require_int(rule, "width", width, minimum=8)
        self.train_steps = require_int(rule, "train_steps", train_steps, minimum=1)
        self.batch_size = require_int(rule, "batch_size", batch_size, minimum=1)
        self.lr = require_real(rule, "lr", lr, low=0.0, low_open=True)
        if training not in TRAINING:
            raise InvalidSettingError(
                f"{rule} needs training one of {', '.join(TRAINING)}, got {training!r}"
            )
        self.training = training
        self.fed_rounds = require_int(rule, "fed_rounds", fed_rounds, minimum=1)
        self.local_steps = require_int(rule, "local_steps", local_steps, minimum=1)
        self.sde = VPSDE(beta_min, beta_max)
        self._net: ScoreNet | None = None

    @property
    def trained(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self._net is not None

    def fit(self, x: torch.Tensor, generator: torch.Generator) -> float:
        """Train the score network on [0, 1] pixel images ``x`` ``(N, C, H, W)``; seconds taken.

        The network's initial weights and every training draw come from ``generator``; it
        lives on ``x``'s device, where the images to purify must be.
        """
        if x.dim() != 4 or x.shape[0] == 0:
            raise InvalidSettingError(
                f"{self.name} trains on images (N >= 1, C, H, W), got {tuple(x.shape)}"
            )
        start = time.perf_counter()
        net = self._new_network(x, generator)
        data = (2.0 * x.clamp(0.0, 1.0) - 1.0).detach()
        train_score_net(net, self.sde, data, generator, self.train_steps, self.batch_size, self.lr)
        net.requires_grad_(False)
        self._net = net.eval()
        return time.perf_counter() - start

    def fit_federated(
        self,
        clients: list[torch.Tensor],
        generator: torch.Generator,
        client_generators: list[torch.Generator],
    ) -> float:
        """Train the score network by FedAvg over the clients' [0, 1] images; seconds taken.

        ``clients[k]`` ``(n_k, C, H, W)`` is client k's data (empty: it sits out); the initial
        weights come from ``generator``, client k's training draws from
        ``client_generators[k]`` (:func:`~fedsim.purification.diffusion.federated.
        federated_score_training`: ``fed_rounds`` rounds of ``local_steps`` steps). With one
        client, one local step and ``client_generators = [generator]`` it is :meth:`fit` with
        ``train_steps = fed_rounds``, exactly.
        """
        shaped = [x for x in clients if x.dim() == 4 and x.shape[0]]
        if not shaped or any(x.dim() != 4 for x in clients):
            raise InvalidSettingError(
                f"{self.name} trains federatedly on client images (n_k, C, H, W) with at least "
                f"one client holding some, got shapes {[tuple(x.shape) for x in clients]}"
            )
        start = time.perf_counter()
        net = self._new_network(shaped[0], generator)
        data = [(2.0 * x.clamp(0.0, 1.0) - 1.0).detach() for x in clients]
        federated_score_training(
            net,
            self.sde,
            data,
            client_generators,
            self.fed_rounds,
            self.local_steps,
            self.batch_size,
            self.lr,
        )
        net.requires_grad_(False)
        self._net = net.eval()
        return time.perf_counter() - start

    def _new_network(self, x: torch.Tensor, generator: torch.Generator) -> ScoreNet:
        """A fresh score network for images like ``x``, its weights seeded from ``generator``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            return ScoreNet(x.shape[1], min(x.shape[2], x.shape[3]), self.width).to(x.device)

    def using(self, sampler: str, steps: int | None = None) -> DiffusionPurifier:
        """The same purifier (and trained score network, shared) with another sampler."""
        other = copy.copy(self)
        fresh = DiffusionPurifier(self.t_star, sampler, steps)
        other.sampler, other.steps = fresh.sampler, fresh.steps
        return other

    def _network(self, x: torch.Tensor) -> ScoreNet:
        if self._net is None:
            raise InvalidSettingError(
                f"{self.name} has no trained score network: call fit(x, generator) first"
            )
        # No Module.to here: moving a module inside torch.func.grad (the attacks) breaks it.
        return self._net

    def purify(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Diffuse to t*, run the reverse sampler, back to [0, 1] pixels (differentiable)."""
        net = self._network(x)
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)
        noise = torch.randn(x.shape, generator=generator, device=generator.device)
        x_t, _ = self.sde.marginal(
            2.0 * x - 1.0, torch.tensor(self.t_star), noise.to(x.device, x.dtype)
        )
        if self.sampler == "ode":
            x0 = probability_flow(net, self.sde, x_t, self.t_star, self.steps)
        else:
            x0 = reverse_sde(net, self.sde, x_t, self.t_star, self.steps, generator)
        return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)

    def denoise(self, x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        r"""One-shot denoising of [0, 1] pixels carrying N(0, σ²I) noise (Carlini et al., 2023).

        On the data scale the noise is 2σ; with t such that
        :math:`\sqrt{(1-\bar\alpha_t)/\bar\alpha_t} = 2\sigma`
        (:meth:`VPSDE.t_for_noise_ratio`), :math:`x_t = \sqrt{\bar\alpha_t}(2x - 1)` is
        distributed as the forward diffusion at t, and Tweedie's estimate
        (:func:`~fedsim.purification.diffusion.samplers.one_shot`) is returned in [0, 1].
        Deterministic: all the randomness is the smoothing noise already in ``x_noisy``.
        """
        net = self._network(x_noisy)
        t = self.sde.t_for_noise_ratio(2.0 * sigma)
        a = self.sde.alpha_bar(torch.tensor(t))
        x0 = one_shot(
            net,
            self.sde,
            torch.sqrt(a).to(x_noisy.device, x_noisy.dtype) * (2.0 * x_noisy - 1.0),
            t,
        )
        return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return (
            f"DiffusionPurifier(t_star={self.t_star}, sampler={self.sampler!r}, "
            f"steps={self.steps}, width={self.width}, train_steps={self.train_steps}, "
            f"training={self.training!r})"
        )
