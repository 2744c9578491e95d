r"""Training FLOPs of one client update and the device's measured matmul throughput.

``throughput.py --workload large`` reports how much of the device a runtime uses:

.. math:: \text{share} = \frac{F_u \cdot U}{\Pi},

with U the measured client updates per second, :math:`F_u` the FLOPs of one client update
and Π the device's measured matmul FLOP/s.

**FLOPs of an update.** :math:`F_u = E \cdot \bar n \cdot f`, with E local epochs,
:math:`\bar n` the mean examples per client and f the training FLOPs of one example:
f = (FLOPs of one SGD step on a batch of B examples) / B, counted by
:class:`torch.utils.flop_counter.FlopCounterMode` over the forward pass, the cross-entropy loss
and the backward pass of the plain (one-client) model, on the ``meta`` device (shapes only,
nothing is computed). FlopCounterMode counts the matmul and convolution family (``mm``,
``addmm``, ``bmm``, ``convolution`` and its backward, attention), 2 FLOPs per multiply-add;
elementwise ops, normalisation, pooling, the loss and the optimizer step are not counted, so
:math:`F_u` is the model-FLOPs convention of MFU (Chowdhery et al., "PaLM: Scaling Language
Modeling with Pathways", JMLR 2023, App. B): the useful work, not what the batched kernels of
a runtime happen to execute (padding, grouped-convolution rewrites). The counted ops are
linear in the batch size, so a shorter last batch costs its share and f does not depend on B.
For a layer with M multiply-adds per example this is 2M forward, 2M for the weight gradient
and 2M for the input gradient (none for the first layer, whose input needs no gradient).

**Matmul throughput.** :math:`\Pi = \max_r 2 n^3 k / t_r`: the best of ``repeats`` timings
:math:`t_r` of k products of two n×n float32 matrices (``torch.matmul``, synchronised on a
GPU), n = 8192 on a GPU and 1024 on the CPU (all of torch's threads). It is measured at
torch's default float32 matmul precision (``"highest"``: no TF32) and, on a GPU, again at
``"high"`` (TF32 tensor cores), because cuDNN convolutions default to TF32
(``torch.backends.cudnn.conv.fp32_precision == "tf32"``) while matmuls do not.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["matmul_peak", "training_flops_per_example"]

GPU_MATRIX, CPU_MATRIX = 8192, 1024


def training_flops_per_example(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 32
) -> float:
    """f: counted FLOPs of one SGD step on ``batch_size`` examples, divided by ``batch_size``.

    ``model`` is copied to the ``meta`` device (the original is untouched). See the module
    docstring for what is counted.

    Examples
    --------
    One linear layer 4 → 3 as the first layer: 2·12 forward + 2·12 weight gradient.

    >>> training_flops_per_example(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), (1, 2, 2))
    48.0
    """
    import copy

    meta = copy.deepcopy(model).to("meta")
    meta.train()
    x = torch.zeros((batch_size, *input_shape), device="meta")
    y = torch.zeros(batch_size, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(meta(x), y).backward()
    return counter.get_total_flops() / batch_size


def matmul_peak(device: str, *, repeats: int = 5, products: int = 10) -> dict[str, Any]:
    """Measured float32 matmul FLOP/s of ``device`` (Π in the module docstring).

    Returns
    -------
    dict
        ``device`` (in words), ``kind`` (``"cuda"`` or ``"cpu"``), ``matrix`` (n),
        ``flop_s`` at torch's default precision, ``flop_s_tf32`` (a GPU at precision
        ``"high"``; on the CPU the same as ``flop_s``), and the precision
        settings in force: ``float32_matmul_precision`` and ``cudnn_conv_fp32_precision``.
    """
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    n = GPU_MATRIX if dev.type == "cuda" else CPU_MATRIX
    default = torch.get_float32_matmul_precision()
    fp32 = _matmul_flop_s(dev, n, repeats, products)
    tf32 = fp32
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")
        try:
            tf32 = _matmul_flop_s(dev, n, repeats, products)
        finally:
            torch.set_float32_matmul_precision(default)
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    return {
        "device": name,
        "kind": dev.type,
        "matrix": n,
        "flop_s": fp32,
        "flop_s_tf32": tf32,
        "float32_matmul_precision": default,
        "cudnn_conv_fp32_precision": conv,
    }


def _matmul_flop_s(device: torch.device, n: int, repeats: int, products: int) -> float:
    """max over ``repeats`` of 2n³·``products`` / seconds, after one warm-up product."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=generator)
    b = torch.randn(n, n, device=device, generator=generator)
    out = torch.empty(n, n, device=device)
    torch.matmul(a, b, out=out)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(products):
            torch.matmul(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return 2.0 * n**3 * products / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
