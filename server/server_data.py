"""The server's own data: the held-out set, and FLTrust's root set taken out of it.

No client trains on the held-out (test) split. The server evaluates the global model on it,
and every probe measures on it (evasion subsets, membership non-members, a thief's public
images). FLTrust's server trains on a *root set* drawn from it, so those examples are taken
out first: neither the evaluation nor any probe then sees an example the server trained on.
:meth:`ServerData.split` is that one split; :class:`~server.parts.ServerParts` makes it once
per run and hands it to each probe when the probe is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedsim.seeding import Stream, torch_generator

__all__ = ["ServerData"]


@dataclass(frozen=True, eq=False)
class ServerData:
    """The held-out examples the server and the probes use, and the root set, if any.

    Attributes
    ----------
    held_out : tuple of torch.Tensor
        ``(x, y)``: the held-out set with the root set taken out (the whole held-out set
        without a root set: the very same tensors).
    root : tuple of torch.Tensor or None
        ``(x, y)``: FLTrust's root set (``None`` for other rules).

    Examples
    --------
    >>> x, y = torch.arange(10.0)[:, None], torch.arange(10)
    >>> data = ServerData.split(x, y, root_size=3, seed=0)
    >>> len(data.held_out[1]), len(data.root[1])
    (7, 3)
    >>> sorted(data.held_out[1].tolist() + data.root[1].tolist()) == list(range(10))
    True
    >>> ServerData.split(x, y, root_size=None, seed=0).held_out[0] is x
    True
    """

    held_out: tuple[torch.Tensor, torch.Tensor]
    root: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def split(
        cls, x: torch.Tensor, y: torch.Tensor, root_size: int | None, seed: int
    ) -> ServerData:
        """Take a seeded root set of ``root_size`` examples out of the held-out ``(x, y)``.

        The root set is the first ``root_size`` entries of one permutation of the held-out
        indices drawn from the generator (seed, ``DEFENSE``, 0); both parts keep the
        held-out order. ``root_size=None``: no root set, ``(x, y)`` as they are.

        Raises
        ------
        ValueError
            ``root_size`` outside 1..n−1 for n held-out examples.
        """
        if root_size is None:
            return cls((x, y))
        if not 1 <= root_size < len(y):
            raise ValueError(
                f"root_size must be in 1..{len(y) - 1} (held-out samples), got {root_size}"
            )
        order = torch.randperm(len(y), generator=torch_generator(seed, Stream.DEFENSE, 0))
        root, rest = order[:root_size].sort().values, order[root_size:].sort().values
        return cls((x[rest], y[rest]), (x[root], y[root]))
