r"""The attacker's query data: what images an extraction attacker plausibly holds.

Three sources, from most to least like the victim's task:

- **a public split** (:func:`public_split`): images of the problem domain disjoint from every
  client's data, e.g. part of the federation's held-out set; the rest stays for evaluation;
- **another domain** (:func:`permuted_pixels`): the same images with one fixed, seeded
  permutation of pixel positions, so the pixel statistics stay and the digit shapes go (a
  stand-in for Copycat's "non-problem-domain" natural images on an 8×8 task);
- **synthetic noise** (:func:`noise_images`): uniform or Gaussian images in the data range.

:func:`draw_queries` is Knockoff Nets' ``random`` sampling strategy over such a pool. Every
draw comes from an explicit :class:`torch.Generator`; nothing reads global RNG state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int

__all__ = ["draw_queries", "noise_images", "permuted_pixels", "public_split", "translate"]


def public_split(
    n: int, attacker_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``n`` held-out indices into the attacker's public data and an evaluation set.

    A seeded ``randperm(n)``: its first ``attacker_size`` entries are the attacker's, the rest
    the held-out set fidelity and accuracy are measured on; both come back sorted.

    Parameters
    ----------
    n : int
        Size of the pool being split (e.g. the federation's test set).
    attacker_size : int
        How many the attacker holds, ``1 <= attacker_size < n``.
    generator : torch.Generator
        The source of the permutation.

    Returns
    -------
    tuple of Tensor
        ``(attacker_indices, evaluation_indices)``, int64, disjoint, together ``0..n-1``.

    Examples
    --------
    >>> a, e = public_split(5, 2, torch.Generator().manual_seed(0))
    >>> len(a), len(e), sorted(a.tolist() + e.tolist())
    (2, 3, [0, 1, 2, 3, 4])
    """
    require_int("public_split", "n", n, minimum=2)
    require_int("public_split", "attacker_size", attacker_size, minimum=1)
    if attacker_size >= n:
        raise InvalidSettingError(
            f"public_split needs attacker_size < n to leave an evaluation set, "
            f"got attacker_size={attacker_size}, n={n}"
        )
    order = torch.randperm(n, generator=generator)
    return order[:attacker_size].sort().values, order[attacker_size:].sort().values


def noise_images(
    n: int,
    shape: tuple[int, int, int],
    kind: str,
    generator: torch.Generator,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    r"""Synthetic query images: uniform or Gaussian noise inside the data range.

    With :math:`[l, h]` the data range: ``uniform`` draws :math:`x \sim U[l, h]` per pixel,
    ``gaussian`` draws :math:`x = \mathrm{clip}(m + s\,\varepsilon, l, h)` with
    :math:`m = (l + h)/2`, :math:`s = (h - l)/4` and :math:`\varepsilon \sim N(0, 1)`.

    Parameters
    ----------
    n : int
        Number of images.
    shape : tuple of int
        ``(C, H, W)`` of one image.
    kind : {"uniform", "gaussian"}
        The noise.
    generator : torch.Generator
        The source of the noise.
    data_range : tuple of float
        :math:`(l, h)`, ``l < h``.

    Returns
    -------
    Tensor
        ``(n, C, H, W)`` float32.

    Examples
    --------
    >>> x = noise_images(3, (1, 2, 2), "gaussian", torch.Generator().manual_seed(0))
    >>> tuple(x.shape), bool(x.min() >= 0.0), bool(x.max() <= 1.0)
    ((3, 1, 2, 2), True, True)
    """
    require_int("noise_images", "n", n, minimum=0)
    low, high = data_range
    if not low < high:
        raise InvalidSettingError(f"noise_images needs data_range low < high, got {data_range}")
    if kind == "uniform":
        return low + (high - low) * torch.rand((n, *shape), generator=generator)
    if kind == "gaussian":
        eps = torch.randn((n, *shape), generator=generator)
        return (0.5 * (low + high) + 0.25 * (high - low) * eps).clamp(low, high)
    raise InvalidSettingError(f"noise_images needs kind 'uniform' or 'gaussian', got {kind!r}")


def permuted_pixels(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""Images of another domain: one seeded permutation :math:`\pi` of pixel positions.

    :math:`x'_{c,i} = x_{c,\pi(i)}` for every image, channel :math:`c` and flat position
    :math:`i`: each image keeps its pixel values (and the pool its statistics) but loses the
    spatial structure the victim learnt, like Copycat's non-problem-domain images.

    Examples
    --------
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> sorted(permuted_pixels(x, torch.Generator().manual_seed(0)).flatten().tolist())
    [0.0, 1.0, 2.0, 3.0]
    """
    n, c, h, w = x.shape
    perm = torch.randperm(h * w, generator=generator)
    return x.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w)


def translate(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    r"""Shift each image by a random :math:`(d_y, d_x) \in \{-s..s\}^2` pixels (edges repeated).

    Examples
    --------
    >>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
    >>> translate(x, 0, torch.Generator().manual_seed(0)).equal(x)
    True
    """
    require_int("translate", "shift", shift, minimum=0)
    if x.dim() != 4:
        raise InvalidSettingError(
            f"translate needs images (n, C, H, W), got shape {tuple(x.shape)}; "
            "give non-image queries a budget <= len(pool)"
        )
    if shift == 0 or len(x) == 0:
        return x.clone()
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator)
    padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


def draw_queries(
    pool: torch.Tensor, queries: int, generator: torch.Generator, shift: int = 1
) -> torch.Tensor:
    r"""Knockoff Nets' ``random`` strategy: ``queries`` images drawn from the attacker's pool.

    The first :math:`N` = ``len(pool)`` queries are a seeded permutation of the pool (sampling
    without replacement, as Orekondy et al.'s random strategy); a budget beyond :math:`N` is
    filled with further permutations of *translated* copies (:func:`translate`, up to
    ``shift`` pixels), so queries rarely repeat (a repeat spends budget on a known answer; the
    zero shift, drawn with probability :math:`1/(2s+1)^2`, repeats its original). A shorter
    budget gives a prefix of a longer one's queries, so nested budgets share their queries
    (:func:`~fedsim.extraction.curve.extraction_curve`).

    Parameters
    ----------
    pool : Tensor
        The attacker's images ``(N, C, H, W)``, ``N >= 1``.
    queries : int
        The query budget :math:`B \ge 1`.
    generator : torch.Generator
        The source of the permutations and translations.
    shift : int
        Largest translation of the copies beyond the first pass (``>= 1`` when ``B > N``).

    Returns
    -------
    Tensor
        ``(B, C, H, W)`` query images.

    Examples
    --------
    >>> pool = torch.arange(3.0).reshape(3, 1, 1, 1)
    >>> q = draw_queries(pool, 2, torch.Generator().manual_seed(0))
    >>> q.shape[0], set(q.flatten().tolist()) <= {0.0, 1.0, 2.0}
    (2, True)

    References
    ----------
    Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models.
    CVPR 2019.
    """
    require_int("draw_queries", "queries", queries, minimum=1)
    require_int("draw_queries", "shift", shift, minimum=0)
    n = len(pool)
    if n == 0:
        raise InvalidSettingError("draw_queries needs a non-empty pool of attacker images")
    if queries > n and shift == 0:
        raise InvalidSettingError(
            f"draw_queries needs shift >= 1 to draw {queries} queries from a pool of {n} "
            "images without repeating one; give shift >= 1 or queries <= len(pool)"
        )
    parts, drawn = [], 0
    while drawn < queries:
        take = min(n, queries - drawn)
        order = torch.randperm(n, generator=generator)
        # a whole pass is drawn (and translated) before the cut, so B's queries are a prefix
        # of every larger budget's
        part = pool[order] if drawn == 0 else translate(pool[order], shift, generator)
        parts.append(part[:take])
        drawn += take
    return torch.cat(parts)
