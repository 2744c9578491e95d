"""Local DP-SGD on in-memory tensors with Opacus, and noise calibration for a whole run.

:func:`train_dp_sgd` wraps the caller's model in a fresh ``GradSampleModule`` and
``DPOptimizer`` on every call (Opacus' ``make_private`` is not idempotent, so no engine is
ever reused across rounds) and unwraps it before returning. It does no accounting itself:
the caller records ``(noise_multiplier, result.sample_rate, result.steps)`` in the client's
:class:`~fedsim.privacy.ledger.PrivacyLedger`.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from dataclasses import dataclass

import torch
from opacus import GradSampleModule
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.privacy.ledger import AccountantName, _check_accountant, _check_delta
from fedsim.training import AdversarialSettings, TrainSettings

__all__ = [
    "DPSettings",
    "DPTrainResult",
    "InsertedGradients",
    "calibrate_noise",
    "draw_batches",
    "local_steps",
    "noise_generator",
    "train_dp_sgd",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPTrainResult:
    """What one call of :func:`train_dp_sgd` did.

    Attributes
    ----------
    loss : float
        Mean training cross-entropy over every example processed (before each step);
        ``nan`` if every Poisson batch was empty.
    steps : int
        Number of DP-SGD steps (noisy optimizer steps) taken.
    sample_rate : float
        q = batch_size / num_examples, the rate to record in the privacy ledger.
    num_examples : int
        N, the size of the local dataset.
    """

    loss: float
    steps: int
    sample_rate: float
    num_examples: int


def local_steps(num_examples: int, batch_size: int, epochs: int) -> int:
    """Return the number of DP-SGD steps :func:`train_dp_sgd` takes: ``epochs · ⌊N / B⌋``.

    Examples
    --------
    >>> local_steps(num_examples=100, batch_size=32, epochs=2)
    6
    """
    for name, value in (("batch_size", batch_size), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSettingError(f"DP-SGD needs an integer {name}, got {value!r}")
    if batch_size < 1 or num_examples < batch_size:
        raise InvalidSettingError(
            f"DP-SGD needs 1 <= batch_size <= number of local examples, got batch_size="
            f"{batch_size} for {num_examples} examples; lower batch_size for this client"
        )
    if epochs < 1:
        raise InvalidSettingError(f"DP-SGD needs epochs >= 1, got {epochs}")
    return epochs * (num_examples // batch_size)


@dataclass(frozen=True)
class InsertedGradients:
    r"""Dirac gradients added to chosen DP-SGD steps' clipped sums, before the noise.

    Step t's sum gains :math:`v\,e_i` for every flat parameter index i of
    ``coordinates[t]`` (a white-box audit's gradient canaries, :mod:`fedsim.audit.gradient`).
    Adding :math:`v e_i` with v = C to the clipped sum is exactly what the step does with one
    more example in its batch whose per-sample gradient is :math:`C e_i`: clipping to C leaves
    a gradient of norm C unchanged, the noise does not depend on the batch, and the sum is
    divided by the *expected* batch size B either way.

    Attributes
    ----------
    coordinates : tuple of torch.Tensor
        One int64 tensor of flat parameter indices per step (empty: nothing that step).
    value : float
        v, the added gradient's norm (the clip C).
    """

    coordinates: tuple[torch.Tensor, ...]
    value: float

    def step_vector(
        self, step: int, dim: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> torch.Tensor | None:
        """Step ``step``'s added ``(dim,)`` vector, or ``None`` when it adds nothing.

        Examples
        --------
        >>> g = InsertedGradients((torch.tensor([2]), torch.tensor([], dtype=torch.long)), 1.5)
        >>> g.step_vector(0, 4, torch.float32).tolist(), g.step_vector(1, 4, torch.float32)
        ([0.0, 0.0, 1.5, 0.0], None)
        """
        if step >= len(self.coordinates) or not len(self.coordinates[step]):
            return None
        out = torch.zeros(dim, dtype=dtype, device=device)
        out[self.coordinates[step].to(device)] += self.value
        return out


@dataclass(frozen=True)
class DPSettings:
    """DP-SGD's settings besides σ: the per-sample clip C and Poisson or shuffled batches."""

    max_grad_norm: float
    poisson_sampling: bool = True


def train_dp_sgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    dp: DPSettings,
    *,
    noise_multiplier: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    adversarial: AdversarialSettings | None = None,
    inserted: InsertedGradients | None = None,
) -> DPTrainResult:
    r"""Train ``model`` in place with DP-SGD (Abadi et al., CCS 2016) on ``(x, y)``.

    Each step t draws a batch :math:`B_t`, clips every per-sample gradient and adds Gaussian
    noise to their sum:

    .. math::
        \tilde g_t = \frac{1}{B}\Big(\sum_{i \in B_t} g_i \min\big(1, \tfrac{C}{\|g_i\|_2}\big)
                     + \mathcal N(0, \sigma^2 C^2 I)\Big)

    where :math:`g_i` is the gradient of example *i*'s cross-entropy loss, C is
    ``dp.max_grad_norm``, σ is ``noise_multiplier`` and B is ``settings.batch_size`` (the
    *expected* batch size, also under Poisson sampling). :math:`\tilde g_t` is then fed to SGD
    with ``settings``' ``lr``, ``momentum`` and ``weight_decay``. Clipping and noise are
    Opacus' ``DPOptimizer``; per-sample gradients are Opacus' ``GradSampleModule``.

    There are ``epochs · ⌊N/B⌋`` steps (:func:`local_steps`) at sample rate q = B/N.
    With ``dp.poisson_sampling=True`` each step includes each example independently with
    probability q (an empty batch still takes a noise-only step), which is the mechanism the
    RDP/PRV accountants analyse. With ``poisson_sampling=False`` each epoch is a fresh
    shuffle cut into ⌊N/B⌋ batches of exactly B (the remainder is dropped); the accounting
    then still assumes Poisson sampling at rate q, the usual approximation.

    Every random draw (batches and noise) comes from ``generator``, so the same generator
    state gives the same parameters. If ``generator`` lives on another device than
    ``device``, the noise comes from a generator on ``device`` seeded from ``generator``.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place and left on ``device`` in its original train/eval mode, with every
        Opacus hook and attribute removed. Must pass Opacus' strict validation
        (no BatchNorm; use GroupNorm).
    x, y : torch.Tensor
        N inputs and their integer class labels.
    settings : TrainSettings
        The local procedure: epochs ≥ 1, batch size B with 1 ≤ B ≤ N, SGD's lr > 0,
        0 ≤ momentum < 1, weight_decay ≥ 0.
    dp : DPSettings
        The clip C = ``max_grad_norm`` > 0, and Poisson (``poisson_sampling=True``) or
        shuffled fixed-size batches.
    noise_multiplier : float
        σ ≥ 0 (σ = 0 clips without noise, i.e. no privacy).
    generator : torch.Generator
        Seeded source of every random draw.
    device : torch.device or str
        Where to train.
    adversarial : AdversarialSettings, optional
        Adversarial training under DP-SGD: per step, the batch's adversarial draws come from
        ``generator`` (after the epoch's batches, before the step's noise), the examples are
        crafted on the model in eval mode with Opacus' hooks off (no per-sample gradients
        recorded), and the DP step then clips the per-sample gradients of the
        adversarial-training loss, a mean of per-sample terms (TRADES' two forward passes
        add up per sample). An empty Poisson batch takes the plain noise-only step.
    inserted : InsertedGradients, optional
        Gradients added to step t's clipped sum before its noise (a white-box audit's
        canaries), indexed like the flat parameters (``fedsim.params.flat_params``).

    Returns
    -------
    DPTrainResult
        Loss, steps taken, sample rate q and N.

    Raises
    ------
    InvalidSettingError
        The model fails Opacus' validation (the message carries Opacus' reasons), or a
        setting is out of range.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> model = nn.Linear(3, 2)
    >>> x, y = torch.randn(20, 3, generator=g), torch.randint(0, 2, (20,), generator=g)
    >>> settings = TrainSettings(epochs=1, batch_size=5, lr=0.1)
    >>> r = train_dp_sgd(model, x, y, settings, DPSettings(max_grad_norm=1.0),
    ...                  noise_multiplier=1.0, generator=g)
    >>> r.steps, r.sample_rate, r.num_examples
    (4, 0.25, 20)

    References
    ----------
    Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang. Deep Learning with Differential
    Privacy. ACM CCS 2016.
    Yousefpour et al. Opacus: User-Friendly Differential Privacy Library in PyTorch. 2021.
    """
    epochs, batch_size, lr = settings.epochs, settings.batch_size, settings.lr
    momentum, weight_decay = settings.momentum, settings.weight_decay
    max_grad_norm, poisson_sampling = dp.max_grad_norm, dp.poisson_sampling
    n = int(x.shape[0])
    if int(y.shape[0]) != n:
        raise InvalidSettingError(f"x has {n} examples but y has {int(y.shape[0])} labels")
    steps_per_epoch = local_steps(n, batch_size, epochs) // epochs
    _check_settings(lr, momentum, weight_decay, noise_multiplier, max_grad_norm)
    sample_rate = batch_size / n
    device = torch.device(device)

    was_training = model.training
    model.train()
    try:
        ModuleValidator.validate(model, strict=True)
    except UnsupportedModuleError as e:
        model.train(was_training)
        raise InvalidSettingError(
            f"model cannot be trained with DP-SGD (Opacus): {e}; replace BatchNorm by GroupNorm"
        ) from e

    if inserted is not None and not all(p.requires_grad for p in model.parameters()):
        model.train(was_training)
        raise InvalidSettingError("inserted gradients need every parameter of the model trainable")
    model.to(device)
    x, y = x.to(device), y.to(device)
    # adversarial examples are crafted on a hook-free copy of the architecture, in eval mode,
    # with the current weights (torch.func's input gradients cannot pass Opacus' hooks)
    shadow = None if adversarial is None else copy.deepcopy(model).eval()
    noise_source = noise_generator(generator, device)
    gsm = GradSampleModule(model, loss_reduction="mean", strict=True)
    try:
        optimizer = _InsertingDPOptimizer(
            torch.optim.SGD(
                [p for p in model.parameters() if p.requires_grad],
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
            ),
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=batch_size,
            loss_reduction="mean",
            generator=noise_source,
        )
        total_loss, seen, steps = 0.0, 0, 0
        for _ in range(epochs):
            for index in draw_batches(n, batch_size, steps_per_epoch, poisson_sampling, generator):
                index = index.to(device)
                optimizer.zero_grad(set_to_none=True)
                with warnings.catch_warnings():
                    # Torch warns that the first layer's input needs no grad; harmless here.
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    if adversarial is None or not index.numel():
                        loss = nn.functional.cross_entropy(gsm(x[index]), y[index])
                    else:
                        loss = _adversarial_loss(
                            gsm, model, shadow, adversarial, x[index], y[index], generator
                        )
                    loss.backward()
                optimizer.pending = (
                    None
                    if inserted is None
                    else inserted.step_vector(steps, optimizer.dim, torch.float32, device)
                )
                optimizer.step()
                steps += 1
                if index.numel():
                    total_loss += float(loss.detach()) * index.numel()
                    seen += index.numel()
        optimizer.zero_grad(set_to_none=True)
    finally:
        gsm.to_standard_module()
        for p in model.parameters():
            p.grad = None
            if hasattr(p, "summed_grad"):  # set by DPOptimizer, not removed by the module
                del p.summed_grad
        model.train(was_training)
    loss_value = total_loss / seen if seen else math.nan
    logger.debug(
        "dp-sgd: %d steps, q=%.4g, sigma=%.4g, C=%.4g, loss=%.4f",
        steps,
        sample_rate,
        noise_multiplier,
        max_grad_norm,
        loss_value,
    )
    return DPTrainResult(loss=loss_value, steps=steps, sample_rate=sample_rate, num_examples=n)


class _InsertingDPOptimizer(DPOptimizer):
    """Opacus' ``DPOptimizer`` that adds ``pending`` (flat, or None) to the clipped sum."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pending: torch.Tensor | None = None
        self.dim = sum(p.numel() for p in self.params)

    def add_noise(self) -> None:
        """Add the step's inserted gradients to ``summed_grad``, then Opacus' noise."""
        if self.pending is not None:
            offset = 0
            for p in self.params:
                n = p.numel()
                part = self.pending[offset : offset + n].view_as(p.summed_grad)
                p.summed_grad = p.summed_grad + part.to(p.summed_grad.dtype)
                offset += n
        super().add_noise()


def _adversarial_loss(
    gsm: GradSampleModule,
    model: nn.Module,
    shadow: nn.Module | None,
    adversarial: AdversarialSettings,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """The adversarial-training loss of one DP-SGD batch; crafting records no per-sample grads."""
    if shadow is None:
        raise ValueError("adversarial training under DP-SGD needs the model's hook-free copy")
    training = adversarial.training
    pixels = adversarial.pixels(x)
    draw = training.draw(pixels, generator)
    weights = {name: p.detach() for name, p in model.named_parameters()}

    def forward(z: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(shadow, weights, (adversarial.normalise(z),))

    x_adv = training.craft(forward, pixels, y, draw)
    return training.objective(adversarial.pixel_model(gsm), pixels, y, x_adv, draw)


def calibrate_noise(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: AccountantName = "rdp",
) -> float:
    """Smallest noise multiplier σ (to Opacus' search tolerance) with ε(σ, q, steps) ≤ target.

    ``steps`` must be the **total** number of DP-SGD steps a client could take over the whole
    run, i.e. ``rounds · local_steps(...)``: the server sees every round's update, and its
    sampling of clients gives no amplification against the server itself, so the worst case
    is a client that takes part in every round. (For central DP-FedAvg pass the round count
    and the client sample rate instead.)

    Parameters
    ----------
    target_epsilon : float
        ε > 0 to reach at the end of the run.
    delta : float
        δ in (0, 1).
    sample_rate : float
        q in (0, 1].
    steps : int
        Total steps ≥ 1.
    accountant : {"rdp", "prv"}
        The accountant that will later report ε (use the same one).

    Returns
    -------
    float
        σ such that ``PrivacyLedger([(σ, q, steps)]).epsilon(delta, accountant)`` is at most
        ``target_epsilon`` and within Opacus' tolerance (0.01) of it.

    Raises
    ------
    InvalidSettingError
        A setting out of range, or a budget too small for any σ ≤ 10⁶.

    Examples
    --------
    >>> sigma = calibrate_noise(8.0, 1e-5, sample_rate=0.01, steps=1000)
    >>> 0.5 < sigma < 1.5
    True
    """
    _check_delta(delta)
    _check_accountant(accountant)
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise InvalidSettingError(f"target_epsilon must be > 0, got {target_epsilon!r}")
    if not 0.0 < sample_rate <= 1.0:
        raise InvalidSettingError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if int(steps) != steps or steps < 1:
        raise InvalidSettingError(f"steps must be an integer >= 1, got {steps!r}")
    try:
        with warnings.catch_warnings():  # see epsilon_from_history: a loose but valid bound
            warnings.filterwarnings(
                "ignore", message="Optimal order is the (largest|smallest) alpha"
            )
            sigma = float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=int(steps),
                    accountant=accountant,
                )
            )
        return sigma
    except ValueError as e:
        raise InvalidSettingError(
            f"cannot reach epsilon={target_epsilon} at delta={delta} with q={sample_rate}, "
            f"{steps} steps ({e}); raise the budget or take fewer steps"
        ) from e


def _check_settings(
    lr: float, momentum: float, weight_decay: float, noise_multiplier: float, max_grad_norm: float
) -> None:
    if not lr > 0:
        raise InvalidSettingError(f"DP-SGD needs lr > 0, got {lr!r}")
    if not 0.0 <= momentum < 1.0:
        raise InvalidSettingError(f"DP-SGD needs 0 <= momentum < 1, got {momentum!r}")
    if not weight_decay >= 0.0:
        raise InvalidSettingError(f"DP-SGD needs weight_decay >= 0, got {weight_decay!r}")
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0.0):
        raise InvalidSettingError(f"DP-SGD needs noise_multiplier >= 0, got {noise_multiplier!r}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0.0):
        raise InvalidSettingError(f"DP-SGD needs max_grad_norm > 0, got {max_grad_norm!r}")


def noise_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """Return ``generator`` if it lives on ``device``, else a generator there seeded from it.

    The seed is one ``randint`` draw from ``generator``, so on another device the noise
    stream starts after that draw. :func:`train_dp_sgd` calls this once, before drawing any
    batch.
    """
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def draw_batches(
    n: int, batch_size: int, steps: int, poisson: bool, generator: torch.Generator
) -> list[torch.Tensor]:
    """Draw one epoch of batches: Poisson masks at q = B/n, or a shuffle cut into B-sized ones.

    Without Poisson sampling the first batch is ``randperm(n)[:B]``, the same first batch as
    plain local SGD (:func:`fedsim.training.train_local`) draws from the same generator.
    """
    if poisson:
        q = batch_size / n
        return [
            torch.nonzero(torch.rand(n, generator=generator, device=generator.device) < q).flatten()
            for _ in range(steps)
        ]
    order = torch.randperm(n, generator=generator, device=generator.device)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]
