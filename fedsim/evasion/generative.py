"""A perturbation generator trained against several agents at once, for transfer.

The attacker trains a small generator network against k agent classifiers (its surrogates), then
applies it, in one forward pass per input, to a target model it never saw.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import EvasionAttack, attack_mode, check_eps
from fedsim.evasion.core import project
from fedsim.evasion.registry import EVASION_ATTACKS
from fedsim.validation import require_int, require_real

__all__ = [
    "GenerativeAttack",
    "MARGIN_CAP",
    "PerturbationGenerator",
    "THREAT_MODELS",
    "latent_distance",
    "perturbation_diversity",
]

THREAT_MODELS = ("outsider", "client")
"""Where the agents come from: public-data surrogates, or a client's own models."""

_TINY = 1e-12


class PerturbationGenerator(nn.Module):
    r"""The generator :math:`G(x) = \operatorname{clip}_{[0,1]}(x + \varepsilon \tanh g(x))`.

    :math:`g` is three 3×3 convolutions (GroupNorm and ReLU between, ``width`` channels, no
    bias in the last: a bias alone would saturate tanh into one universal pattern), so
    :math:`\lVert G(x) - x \rVert_\infty \le \varepsilon` by construction and the perturbation
    depends on the input (Poursaeed et al.'s image-dependent perturbation, CVPR 2018).

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> g = PerturbationGenerator(channels=1, eps=0.1)
    >>> x = torch.rand(4, 1, 8, 8)
    >>> bool((g(x) - x).abs().max() <= 0.1), bool(g(x).min() >= 0)
    (True, True)
    """

    def __init__(self, channels: int, eps: float, width: int = 32) -> None:
        super().__init__()
        self.eps = eps
        groups = 4 if width % 4 == 0 else 1
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.GroupNorm(groups, width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(groups, width),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1, bias=False),
        )

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The raw perturbation ε·tanh(g(x − ½)), before the clip to [0, 1]."""
        return self.eps * torch.tanh(self.net(x - 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The adversarial images, in the ε-ball around ``x`` and in [0, 1]."""
        return (x + self.delta(x)).clamp(0.0, 1.0)


def latent_distance(
    clean: Sequence[torch.Tensor], adversarial: Sequence[torch.Tensor]
) -> torch.Tensor:
    r"""Mean relative squared distance of adversarial from clean latents, over K agents.

    .. math:: L_{lat} = \frac{1}{K} \sum_{k=1}^{K} \frac{\frac{1}{B}\sum_i
        \lVert h_k(x'_i) - h_k(x_i) \rVert_2^2}{\frac{1}{B}\sum_i \lVert h_k(x_i) \rVert_2^2}

    with :math:`h_k` agent k's penultimate features (the input of its last linear layer). The
    generator maximises it; it is 0 when the latents coincide (δ = 0).

    Examples
    --------
    >>> h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> latent_distance([h], [h]).item()
    0.0
    >>> latent_distance([h], [h + torch.tensor([1.0, 0.0])]).item()
    1.0
    """
    terms = [
        (a - c).pow(2).flatten(1).sum(1).mean() / c.pow(2).flatten(1).sum(1).mean().clamp_min(_TINY)
        for c, a in zip(clean, adversarial, strict=True)
    ]
    return torch.stack(terms).mean()


def perturbation_diversity(delta: torch.Tensor) -> torch.Tensor:
    r"""Mean pairwise ℓ1 distance of the batch's perturbations, per coordinate.

    .. math:: L_{div} = \frac{1}{B(B-1)\,d} \sum_{i \ne j} \lVert \delta_i - \delta_j \rVert_1

    Maximised, it keeps the generator from collapsing to one universal pattern; 0 when δ = 0.

    Examples
    --------
    >>> perturbation_diversity(torch.zeros(3, 1, 2, 2)).item()
    0.0
    >>> round(perturbation_diversity(torch.tensor([[0.1, 0.1], [-0.1, -0.1]])).item(), 6)
    0.2
    """
    b = delta.shape[0]
    if b < 2:
        return delta.new_zeros(())
    flat = delta.flatten(1)
    return torch.cdist(flat, flat, p=1).sum() / (b * (b - 1) * flat.shape[1])


MARGIN_CAP = 5.0
"""κ: a sample's margin stops counting once it is this far past the boundary (logits)."""


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Mean capped margin :math:`\min(\max_{j \ne y} \ell_j - \ell_y, \kappa)` (CW's, bounded)."""
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (other - true).clamp(max=MARGIN_CAP).mean()


@contextlib.contextmanager
def _penultimate(models: Sequence[nn.Module]) -> Iterator[list[list[torch.Tensor]]]:
    """Record, per model and forward, the input of the last linear layer it ran (else its output).

    The last linear layer *run*, not the last registered: a multi-task model's single-task view
    holds every task's head but runs one.
    """
    taps: list[list[torch.Tensor]] = [[] for _ in models]
    handles = []
    for tap, model in zip(taps, models, strict=True):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        latest: dict[str, torch.Tensor] = {}
        for linear in linears:
            handles.append(
                linear.register_forward_pre_hook(lambda _m, a, d=latest: d.update(h=a[0]))
            )

        def record(_m: nn.Module, _a: object, out: torch.Tensor, t=tap, d=latest) -> None:
            t.append(d.pop("h", out))

        handles.append(model.register_forward_hook(record))
    try:
        yield taps
    finally:
        for h in handles:
            h.remove()


@EVASION_ATTACKS.register("generative")
class GenerativeAttack(EvasionAttack):
    r"""Multi-agent generative perturbations (transfer; ℓ∞).

    A generator :math:`G` (:class:`PerturbationGenerator`) is trained on the attacker's
    unlabelled images against K agent classifiers :math:`f_1, \dots, f_K` at once, minimising

    .. math:: L(G) = -\frac{1}{K}\sum_{k=1}^K m_\kappa\bigl(f_k(G(x)), \hat y_k\bigr)
        - \lambda_{lat} L_{lat} - \frac{\lambda_{div}}{\varepsilon} L_{div}, \qquad
        \hat y_k = \arg\max f_k(x),

    with :math:`m_\kappa(\ell, y) = \min(\max_{j \ne y} \ell_j - \ell_y, \kappa)` the
    batch-mean capped margin (κ = :data:`MARGIN_CAP`), so its perturbations cross every agent's
    decision boundary (the agents' own clean labels: no ground truth needed);
    :func:`latent_distance` pushes the adversarial features away from the clean ones in every
    agent's latent space and :func:`perturbation_diversity` keeps the patterns input-dependent.
    It is then applied to the target: :math:`x' = G(x)`. The idea is the multi-agent
    generative network of the thesis fedsim follows; the generator is that of
    Poursaeed et al., "Generative Adversarial Perturbations" (CVPR 2018), and the feature-space
    objective follows Naseer et al., "Cross-Domain Transferability of Adversarial
    Perturbations" (NeurIPS 2019). Agents and data come from :meth:`fit` (the robustness probe
    draws them from the attacker's threat model, ``threat_model``). Departures from the papers:
    a capped margin instead of the cross-entropy (an unbounded loss keeps pushing samples that
    are already fooled), and GroupNorm with no output bias in g (:class:`PerturbationGenerator`).

    Parameters
    ----------
    eps : float
        ℓ∞ radius ε ≥ 0.
    agents : int
        K ≥ 1, the number of agents :meth:`fit` expects.
    epochs : int
        Passes over the attacker's images.
    lr : float
        Adam's step size.
    batch_size : int
        Images per step.
    latent_weight, diversity_weight : float
        :math:`\lambda_{lat}, \lambda_{div}` ≥ 0.
    width : int
        The generator's channels.
    threat_model : {"outsider", "client"}
        Read by the probe: agents trained on public data, or a client's own models.

    Raises
    ------
    InvalidSettingError
        On an invalid setting; when called before :meth:`fit`.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> agent = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    >>> x = torch.rand(32, 1, 4, 4)
    >>> attack = GenerativeAttack(eps=0.1, agents=1, epochs=2)
    >>> attack.label
    'generative-linf-0.1-1agents'
    >>> attack.fit([agent], x, torch.Generator().manual_seed(0))
    >>> x_adv = attack(agent, x, torch.zeros(32), torch.Generator())
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    """

    name = "generative"

    def __init__(
        self,
        eps: float,
        agents: int = 3,
        epochs: int = 40,
        lr: float = 1e-3,
        batch_size: int = 64,
        latent_weight: float = 1.0,
        diversity_weight: float = 0.1,
        width: int = 32,
        threat_model: str = "outsider",
    ) -> None:
        self.eps = check_eps(self.name, eps)
        self.agents = require_int(self.name, "agents", agents, minimum=1)
        self.epochs = require_int(self.name, "epochs", epochs, minimum=1)
        self.lr = require_real(self.name, "lr", lr, low=0.0, low_open=True)
        self.batch_size = require_int(self.name, "batch_size", batch_size, minimum=1)
        self.latent_weight = require_real(self.name, "latent_weight", latent_weight, low=0.0)
        self.diversity_weight = require_real(
            self.name, "diversity_weight", diversity_weight, low=0.0
        )
        self.width = require_int(self.name, "width", width, minimum=1)
        if threat_model not in THREAT_MODELS:
            raise InvalidSettingError(
                f"{self.name} needs threat_model in {THREAT_MODELS}, got {threat_model!r}"
            )
        self.threat_model = threat_model
        self._generator: PerturbationGenerator | None = None

    @property
    def label(self) -> str:
        """``"generative-linf-<eps>-<K>agents"``, with ``-client`` for a client's agents."""
        suffix = "-client" if self.threat_model == "client" else ""
        return f"{self.name}-{self.norm}-{self.eps:g}-{self.agents}agents{suffix}"

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has trained the generator."""
        return self._generator is not None

    def fit(self, agents: Sequence[nn.Module], x: torch.Tensor, generator: torch.Generator) -> None:
        """Train the generator on images ``x`` (pixels, no labels) against ``agents``.

        The generator's initial weights and the batch order come from ``generator``.

        Raises
        ------
        InvalidSettingError
            If there are not exactly ``agents`` agents, or no images.
        """
        if len(agents) != self.agents:
            raise InvalidSettingError(
                f"{self.label} was set up for {self.agents} agents, got {len(agents)}"
            )
        if not len(x) or x.dim() != 4:
            raise InvalidSettingError(
                f"{self.label} trains on images (B, C, H, W), got shape {tuple(x.shape)}"
            )
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = PerturbationGenerator(x.shape[1], self.eps, self.width).to(x.device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
        with attack_mode(*agents), _penultimate(agents) as taps:
            for _ in range(self.epochs):
                for batch in torch.randperm(len(x), generator=generator).split(self.batch_size):
                    xb = x[batch.to(x.device)]
                    with torch.no_grad():
                        clean = [agent(xb) for agent in agents]
                        clean_latents = [tap.pop() for tap in taps]
                    delta = net.delta(xb)
                    adv = [agent((xb + delta).clamp(0.0, 1.0)) for agent in agents]
                    adv_latents = [tap.pop() for tap in taps]
                    fool = torch.stack(
                        [_margin(a, c.argmax(1)) for a, c in zip(adv, clean, strict=True)]
                    ).mean()
                    loss = -(
                        fool
                        + self.latent_weight * latent_distance(clean_latents, adv_latents)
                        + self.diversity_weight
                        * perturbation_diversity(delta)
                        / max(self.eps, _TINY)
                    )
                    if not bool(torch.isfinite(loss)):  # a broken agent (NaN weights): no step
                        continue
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        self._generator = net.eval().requires_grad_(False)

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``G(x)``: ``model``, ``y`` and ``generator`` are not read (a transfer attack)."""
        if self._generator is None:
            raise InvalidSettingError(
                f"{self.label} has no trained generator: call fit(agents, x, generator) first "
                "(the robustness probe does, with the agents its threat_model allows)"
            )
        with torch.no_grad():
            x_adv = self._generator(x)
            x_adv = torch.where(torch.isfinite(x_adv), x_adv, x)  # never leave the ball
            return project(x_adv, x, self.eps, self.norm)
