"""A curious server's membership scores from a client's updates over rounds.

**Threat model.** The server is honest-but-curious: it runs the protocol, sees every
participating client's update Δ_t = w_t^{client} − w_t^{global} in each round t it takes part
in (no secure aggregation), knows the global models w_t, and holds candidate examples (or a
candidate data set) whose membership in that client's data it wants to decide. It may compute
gradients of the loss at w_t. A plain SGD update is, to first order, −η × the sum of the
gradients of the client's own examples, so a member's negative gradient points along the update
more than a non-member's does (Nasr, Shokri, Houmansadr, "Comprehensive Privacy Analysis of
Deep Learning", IEEE S&P 2019, passive global attacker; Li, Li, Ribeiro, "Effective Passive
Membership Inference Attacks in Federated Learning against Overparameterized Models", ICLR
2023, cosine of gradient and update). Combining rounds is stronger than one update: the scores
below average over the rounds the server observed.

Gradients come in as ``(T, n, d)`` tensors: round t's gradient of candidate i's loss at the
global model w_t, flattened like the updates (e.g. by :func:`example_gradients`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsim.errors import InvalidSettingError

__all__ = [
    "client_level_scores",
    "example_gradients",
    "gradient_norm_score",
    "update_cosine_score",
]


def update_cosine_score(
    updates: torch.Tensor | Sequence[torch.Tensor], gradients: torch.Tensor
) -> np.ndarray:
    r"""Mean over rounds of the cosine between a candidate's negative gradient and the update.

    .. math:: s_i = \frac{1}{T} \sum_{t=1}^{T} \cos(-g_{t,i}, \Delta_t)

    with :math:`\Delta_t` the client's update in round t and :math:`g_{t,i}` the gradient of
    candidate i's loss at that round's global model (a zero vector has cosine 0). Computed in
    float64.

    Parameters
    ----------
    updates : torch.Tensor or sequence of torch.Tensor
        ``(T, d)`` the client's updates, or a list of T ``(d,)`` updates.
    gradients : torch.Tensor
        ``(T, n, d)`` the candidates' gradients at the matching global models.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` scores in [−1, 1], higher = more likely a member.

    Examples
    --------
    >>> updates = [torch.tensor([-1.0, 0.0]), torch.tensor([0.0, -1.0])]
    >>> grads = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]]])
    >>> update_cosine_score(updates, grads).round(4)  # (1 + 0.7071)/2, (0 + 1)/2
    array([0.8536, 0.5   ])
    """
    u, g = _updates_and_gradients("update cosine score", updates, gradients)
    cos = F.cosine_similarity(-g, u[:, None, :].expand_as(g), dim=2, eps=1e-300)
    return cos.mean(dim=0).numpy()


def gradient_norm_score(gradients: torch.Tensor) -> np.ndarray:
    r"""Minus the mean gradient norm over rounds: members are fitted, so their gradients are small.

    .. math:: s_i = -\frac{1}{T} \sum_{t=1}^{T} \lVert g_{t,i} \rVert_2

    (the gradient norm as a membership signal: Nasr, Shokri, Houmansadr, IEEE S&P 2019). It
    needs no update, only the global models, so any party that sees the global model (every
    client too) can compute it.

    Parameters
    ----------
    gradients : torch.Tensor
        ``(T, n, d)`` the candidates' gradients at T global models.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` scores ≤ 0, higher = more likely a member.

    Examples
    --------
    >>> grads = torch.tensor([[[3.0, 4.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    >>> gradient_norm_score(grads)
    array([-3., -1.])
    """
    g = _gradients("gradient norm score", gradients)
    return (-torch.linalg.vector_norm(g, dim=2).mean(dim=0)).numpy()


def client_level_scores(
    updates: torch.Tensor | Sequence[torch.Tensor],
    candidate_gradients: Sequence[torch.Tensor],
) -> np.ndarray:
    r"""Client-level membership: how well each candidate data set explains a client's updates.

    Candidate k holds a data set (a client's, or a user's across clients); its round-t
    gradient is the mean of its examples' gradients at w_t,
    :math:`\bar g_{t,k} = \frac{1}{n_k}\sum_j g_{t,k,j}`, and its score is
    :math:`s_k = \frac1T \sum_t \cos(-\bar g_{t,k}, \Delta_t)`. A client that trained on
    candidate k's data moves along :math:`-\bar g_{t,k}` (the first-order FedAvg step), so the
    true owner scores highest. This is :func:`update_cosine_score` lifted from examples to data
    sets, in the spirit of user-level inference against FL (Suri, Kanani, Marathe, Lu,
    "Subject Membership Inference Attacks in Federated Learning", arXiv 2022).

    Parameters
    ----------
    updates : torch.Tensor or sequence of torch.Tensor
        ``(T, d)`` one client's updates.
    candidate_gradients : sequence of torch.Tensor
        K tensors of shape ``(T, n_k, d)``: each candidate's per-example gradients.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` scores in [−1, 1].

    Examples
    --------
    >>> updates = torch.tensor([[-1.0, 0.0]])
    >>> owner = torch.tensor([[[1.0, 1.0], [1.0, -1.0]]])  # mean gradient [1, 0]
    >>> other = torch.tensor([[[0.0, 1.0]]])
    >>> client_level_scores(updates, [owner, other])
    array([1., 0.])
    """
    if len(candidate_gradients) == 0:
        raise InvalidSettingError("client-level score needs at least one candidate, got none")
    means = []
    for k, g in enumerate(candidate_gradients):
        g = _gradients(f"client-level score (candidate {k})", g)
        if g.shape[1] == 0:
            raise InvalidSettingError(f"client-level score: candidate {k} has no examples")
        means.append(g.mean(dim=1))
    return update_cosine_score(updates, torch.stack(means, dim=1))


def example_gradients(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Per-example gradients of the cross-entropy at ``model``'s weights, flattened.

    Row i is :math:`\nabla_w \ell(f_w(x_i), y_i)` over ``model.parameters()`` in their order,
    concatenated (the layout of the flat update vectors), computed with ``torch.func``
    (``vmap`` of ``grad``), in the model's dtype. The model must not use batch statistics
    (BatchNorm in training mode); it is evaluated as is.

    Parameters
    ----------
    model : torch.nn.Module
        The global model of the round.
    inputs : torch.Tensor
        ``(n, ...)`` examples.
    labels : torch.Tensor
        ``(n,)`` integer labels.

    Returns
    -------
    torch.Tensor
        ``(n, d)`` detached gradients, d the number of parameters.

    Examples
    --------
    >>> model = nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.zero_()
    >>> example_gradients(model, torch.tensor([[1.0, 2.0]]), torch.tensor([0]))
    tensor([[-0.5000, -1.0000,  0.5000,  1.0000]])
    """
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}
    if inputs.shape[0] != labels.shape[0]:
        raise InvalidSettingError(
            f"example_gradients needs one label per input, got {inputs.shape[0]} inputs and "
            f"{labels.shape[0]} labels"
        )

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs, labels)
    return torch.cat([per_example[name].reshape(inputs.shape[0], -1) for name in names], dim=1)


def _gradients(rule: str, gradients: torch.Tensor) -> torch.Tensor:
    if not isinstance(gradients, torch.Tensor) or gradients.ndim != 3:
        shape = tuple(gradients.shape) if isinstance(gradients, torch.Tensor) else type(gradients)
        raise InvalidSettingError(f"{rule} needs (T, n, d) gradients, got {shape}")
    g = gradients.detach().to("cpu", torch.float64)
    if not torch.isfinite(g).all():
        raise InvalidSettingError(f"{rule} needs finite gradients; found NaN or inf")
    return g


def _updates_and_gradients(
    rule: str, updates: torch.Tensor | Sequence[torch.Tensor], gradients: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(updates, torch.Tensor):
        if len(updates) == 0:
            raise InvalidSettingError(f"{rule} needs at least one round's update, got none")
        updates = torch.stack([torch.as_tensor(u) for u in updates])
    if updates.ndim != 2:
        raise InvalidSettingError(f"{rule} needs (T, d) updates, got {tuple(updates.shape)}")
    u = updates.detach().to("cpu", torch.float64)
    g = _gradients(rule, gradients)
    if g.shape[0] != u.shape[0] or g.shape[2] != u.shape[1]:
        raise InvalidSettingError(
            f"{rule} needs gradients of shape ({u.shape[0]}, n, {u.shape[1]}) for updates "
            f"{tuple(u.shape)}, got {tuple(g.shape)}"
        )
    if not torch.isfinite(u).all():
        raise InvalidSettingError(f"{rule} needs finite updates; found NaN or inf")
    return u, g
