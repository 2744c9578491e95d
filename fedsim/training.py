"""Local training and evaluation on in-memory tensors (no DataLoader).

A client's local procedure is plain minibatch SGD (optionally with momentum and weight decay)
over ``epochs`` passes of a seeded shuffle of its data; with :class:`AdversarialSettings`
(``clients.adversarial_training``) each batch's loss is the adversarial-training loss of
:class:`fedsim.evasion.AdversarialTraining`, attacked in [0, 1] pixel space.

:func:`sgd_steps` is fedsim's one SGD minibatch loop: clients' :func:`train_local`, the
extraction surrogate (:func:`fedsim.extraction.train_surrogate`) and the server's WAFFLE
retraining (:func:`fedsim.watermark.embed`) differ only in their batches' loss and in when
they stop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.data.tasks import TaskSet
from fedsim.data.transforms import Augment
from fedsim.evasion import AdversarialTraining, model_in_pixel_space, to_pixel_space
from fedsim.scenario import ClientsConfig
from fedsim.validation import require_int

__all__ = [
    "AdversarialSettings",
    "BatchLoss",
    "EvalResult",
    "TrainResult",
    "TrainSettings",
    "evaluate",
    "evaluate_tasks",
    "minibatches",
    "sgd_steps",
    "single_thread",
    "task_loss",
    "train_local",
]

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(model, x, y)``: a batch's training loss (cross-entropy when not given)."""


@dataclass(frozen=True)
class TrainSettings:
    """The local procedure (from the scenario's ``clients`` block)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0

    @classmethod
    def from_clients(cls, clients: ClientsConfig) -> TrainSettings:
        """The local procedure of a scenario's ``clients`` block."""
        return cls(
            clients.local_epochs,
            clients.batch_size,
            clients.lr,
            clients.momentum,
            clients.weight_decay,
        )

    def optimizer(self, model: nn.Module) -> torch.optim.SGD:
        """A fresh SGD optimizer on ``model``'s parameters with this ``lr``, momentum and decay.

        Examples
        --------
        >>> opt = TrainSettings(1, 8, lr=0.1, momentum=0.9).optimizer(nn.Linear(2, 2))
        >>> opt.defaults["lr"], opt.defaults["momentum"], opt.defaults["weight_decay"]
        (0.1, 0.9, 0.0)
        """
        return torch.optim.SGD(
            model.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )


@dataclass(frozen=True)
class AdversarialSettings:
    r"""Adversarial training of an honest client: the loss and the dataset's normalisation.

    Attributes
    ----------
    training : AdversarialTraining
        PGD-AT, TRADES or FAT with their settings.
    mean, std : tuple of float or None
        ``Dataset.mean``/``Dataset.std``: the examples are crafted on
        :math:`x_{pix} = x\sigma + \mu` (clipped to [0, 1]) against the model composed with the
        normalisation; ``None`` when the data already is in [0, 1].
    """

    training: AdversarialTraining
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (as stored) in [0, 1] pixel space."""
        return to_pixel_space(x, self.mean, self.std)

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        r"""Pixels back to the model's inputs, :math:`(z - \mu)/\sigma` (as ``PixelSpaceModel``)."""
        if self.mean is None or self.std is None:
            return z
        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=z.device).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32, device=z.device).view(shape)
        return (z - mean) / std

    def pixel_model(self, model: nn.Module) -> nn.Module:
        """``model`` as a function of [0, 1] pixels (itself for data in [0, 1])."""
        pixel_model = model_in_pixel_space(model, self.mean, self.std)
        if pixel_model is not model:
            pixel_model = pixel_model.to(next(model.parameters()).device)
        return pixel_model

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The batch's adversarial-training loss; its draws come from ``generator``."""
        return self.training(self.pixel_model(model), self.pixels(x), y, generator)


@dataclass(frozen=True)
class TrainResult:
    """Mean training loss over all local steps, the step count and the example count."""

    loss: float
    steps: int
    num_examples: int


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy loss and accuracy."""

    loss: float
    accuracy: float
    num_examples: int


@contextlib.contextmanager
def single_thread(device: torch.device) -> Iterator[None]:
    """Run CPU work on one intra-op thread, then restore the previous setting.

    The thread count changes the order of floating-point reductions, so clients train on one
    thread on every runtime (a Ray actor gets one CPU): the same seed then gives bit-identical
    updates on ``inline`` and ``ray``. GPU work is unaffected.
    """
    previous = torch.get_num_threads()
    if device.type != "cpu" or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    generator: torch.Generator,
    augment: Augment | None = None,
    adversarial: AdversarialSettings | None = None,
    loss: BatchLoss | None = None,
) -> TrainResult:
    """Run local SGD on ``(x, y)`` in place; shuffles come from ``generator`` (CPU).

    Tensors are moved to the device of ``model``'s parameters once, before the loop
    (:func:`sgd_steps`, on one CPU thread). ``augment`` (e.g. the dataset's random crop and
    flip) is applied to each minibatch, drawing from ``generator`` too (so with it the shuffles
    of later epochs differ from a run without it). ``adversarial`` replaces each batch's
    cross-entropy by the adversarial-training loss; its draws (random starts, FAT's replaced
    samples) come from ``generator`` after the batch's augmentation. The reported loss is the
    mean of the steps' losses, summed in float32 on the model's device. ``loss`` replaces the
    cross-entropy of a plain batch (a multi-task client's sum over its tasks, :func:`task_loss`).
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        xb = x[batch] if augment is None else augment(x[batch], generator)
        if adversarial is None:
            if loss is not None:
                return loss(model, xb, y[batch])
            return F.cross_entropy(model(xb), y[batch])
        return adversarial.loss(model, xb, y[batch], generator)

    batches = minibatches(len(y), settings, generator)
    losses = sgd_steps(model, settings.optimizer(model), batches, batch_loss)
    total = torch.zeros((), device=device)
    for loss in losses:
        total += loss
    steps = len(losses)
    return TrainResult(loss=float(total) / max(steps, 1), steps=steps, num_examples=len(y))


def sgd_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[torch.Tensor],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    max_steps: int | None = None,
) -> list[torch.Tensor]:
    r"""One optimizer step per index batch; return each step's loss (detached).

    For each batch :math:`B` (moved to the model's device) the step is

    .. math:: \theta \leftarrow \mathrm{step}\big(\theta, \nabla_\theta L(B)\big),

    :math:`L` = ``batch_loss`` (which may draw from a generator of its own: augmentation,
    adversarial examples) and ``step`` the ``optimizer``'s update (SGD with momentum and weight
    decay in fedsim); gradients are cleared before each. The model is put in training mode
    first, the loop runs on one CPU thread (:func:`single_thread`), and it stops after
    ``max_steps`` steps when given, before drawing the next batch. ``batches`` is consumed
    lazily, so draws of :func:`minibatches` interleave with those of ``batch_loss`` in batch
    order. The one SGD minibatch loop of fedsim: local training, surrogate training and the
    watermark embedding all call it.

    Parameters
    ----------
    model : nn.Module
        Trained in place.
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters (:meth:`TrainSettings.optimizer`); its state (momentum)
        carries over between calls.
    batches : iterable of Tensor
        Index batches, e.g. :func:`minibatches`.
    batch_loss : callable
        ``batch_loss(indices) -> scalar loss`` on the batch's examples.
    max_steps : int, optional
        At most this many steps (at least 1).

    Returns
    -------
    list of Tensor
        The loss of every step taken, in order (their count is the step count).

    Examples
    --------
    Fit :math:`w` in :math:`y = wx` by mean squared error (the gradient is
    :math:`\frac{1}{|B|}\sum_i 2(wx_i - y_i)x_i`: :math:`w` goes 0 → 1 → 1.5, and the third
    batch is never taken):

    >>> model = nn.Linear(1, 1, bias=False)
    >>> _ = nn.init.zeros_(model.weight)
    >>> x, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]])
    >>> losses = sgd_steps(model, torch.optim.SGD(model.parameters(), lr=0.1),
    ...     [torch.tensor([0, 1])] * 3, lambda b: F.mse_loss(model(x[b]), y[b]), max_steps=2)
    >>> [round(float(loss), 4) for loss in losses], round(model.weight.item(), 4)
    ([10.0, 2.5], 1.5)
    """
    if max_steps is not None:
        require_int("sgd_steps", "max_steps", max_steps, minimum=1)
    device = next(model.parameters()).device
    losses: list[torch.Tensor] = []
    model.train()
    with single_thread(device):
        for batch in batches:
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(batch)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            if len(losses) == max_steps:
                break
    return losses


def minibatches(
    n: int, settings: TrainSettings, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Yield the index batches of local SGD: per epoch a ``randperm(n)`` cut into B-sized pieces.

    The last batch of an epoch is shorter when B does not divide n (nothing is dropped). A
    generator function, so draws the caller makes between batches (augmentation) come in
    between the shuffles, as in :func:`train_local`, which every runtime reproduces.

    Examples
    --------
    >>> settings = TrainSettings(epochs=2, batch_size=2, lr=0.1)
    >>> [len(b) for b in minibatches(5, settings, torch.Generator().manual_seed(0))]
    [2, 2, 1, 2, 2, 1]
    """
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, settings.batch_size):
            yield order[start : start + settings.batch_size]


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048
) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in large batches.

    On the CPU it runs on one thread, like training (:func:`single_thread`): right after
    clients have trained single-threaded, a two-thread evaluation of a small model measured
    20× slower than a one-thread one on the 2-core CI machine (90 ms against 4.5 ms for the
    digits test set), the thread pool's wake-up dominating the arithmetic.
    """
    device = next(model.parameters()).device
    with single_thread(device), torch.no_grad():
        return _evaluate(model, x, y, batch_size, device)


def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> EvalResult:
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb = x[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        logits = model(xb)
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    n = len(y)
    return EvalResult(loss=loss_sum / max(n, 1), accuracy=correct / max(n, 1), num_examples=n)


def task_loss(tasks: TaskSet, held: Sequence[str]) -> BatchLoss:
    r"""The multi-task training loss of a client holding tasks ``held``.

    .. math:: L(x, y) = \sum_{t \in \text{held}} \mathrm{CE}\big(f_t(x), g_t(y)\big),

    :math:`f_t` task :math:`t`'s logits of a :class:`~fedsim.models.multitask.MultiTaskModel`
    (or of the one behind a :class:`~fedsim.models.multitask.TaskView`) and :math:`g_t` its
    label transform (:mod:`fedsim.data.tasks`). Heads of tasks not held get no gradient.

    Examples
    --------
    >>> from fedsim.data.tasks import task_set
    >>> from fedsim.models.multitask import MultiTaskModel
    >>> ts = task_set(["digit", "parity"], "digits", 10)
    >>> model = MultiTaskModel(nn.Flatten(), 4, {"digit": 10, "parity": 2})
    >>> _ = [nn.init.zeros_(p) for p in model.heads.parameters()]  # uniform predictions
    >>> x, y = torch.zeros(2, 1, 2, 2), torch.tensor([3, 4])
    >>> [round(float(task_loss(ts, held)(model, x, y).detach()), 4)  # ln 2, ln 2 + ln 10
    ...  for held in (["parity"], ["digit", "parity"])]
    [0.6931, 2.9957]
    """
    transforms = [(t, tasks.tasks[tasks.names.index(t)]) for t in held]

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inner = getattr(model, "multitask", model)
        features = inner.backbone(x)
        return sum(
            (F.cross_entropy(inner.head(t)(features), task.labels(y)) for t, task in transforms),
            torch.zeros((), device=x.device),
        )

    return loss


def evaluate_tasks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: TaskSet
) -> dict[str, float]:
    """Each task's accuracy of a multi-task ``model`` (or its view) on ``(x, y)``."""
    inner = getattr(model, "multitask", model)
    return {
        t: evaluate(inner.as_single_task(t), x, tasks.labels(t, y)).accuracy for t in tasks.names
    }
