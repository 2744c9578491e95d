"""Character-level language models (next-character prediction): ``char_lstm``, ``char_transformer``.

Both read a window of character indices ``(batch, L)`` (any integer dtype; the datasets store
``uint8``) and return the logits ``(batch, V)`` of the character that follows it, so the loss,
accuracy and every client-side procedure are those of classification with ``V`` classes.

- ``char_lstm``: LEAF's model (Caldas et al., "LEAF: A Benchmark for Federated Settings",
  2018): an embedding of 8, two LSTM layers of 256 units, a linear layer on the last step's
  output. ``dp: true`` builds the LSTM from Opacus' ``DPLSTM`` (the same cell, written with
  linear layers so Opacus can compute per-sample gradients and ``torch.func.vmap`` can batch
  clients); it is about 1.7× slower on the CPU, so it is asked for, not the default: local
  DP-SGD and the vectorized runtime need it.
- ``char_transformer``: a small causal (decoder-only) transformer, pre-norm blocks of masked
  self-attention and a ReLU MLP, learned position embeddings, written with ``nn.Linear``,
  ``nn.LayerNorm`` and ``nn.Embedding`` only (no buffers, no dropout), so Opacus and
  ``vmap`` both handle it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from opacus.layers import DPLSTM
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models.registry import MODELS
from fedsim.validation import require_int

__all__ = ["CharLSTM", "CharTransformer"]


def _sequence_length(model: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 1 or input_shape[0] < 1:
        raise InvalidSettingError(
            f"{model} reads character windows (a text dataset: shakespeare); got inputs of "
            f"shape {tuple(input_shape)}"
        )
    return int(input_shape[0])


@MODELS.register("char_lstm")
class CharLSTM(nn.Module):
    """LEAF's character LSTM: embed, two LSTM layers, a linear read-out of the last step.

    Parameters
    ----------
    input_shape : tuple[int]
        ``(L,)``: characters per window.
    num_classes : int
        Vocabulary size ``V`` (the embedding's rows and the logits).
    embedding : int
        Embedding width (LEAF: 8).
    hidden : int
        LSTM units per layer (LEAF: 256).
    layers : int
        LSTM layers (LEAF: 2).
    dp : bool
        Use Opacus' ``DPLSTM`` (per-sample gradients; vmap-able) instead of ``nn.LSTM``.

    Examples
    --------
    >>> model = CharLSTM((80,), 80, hidden=16)
    >>> model(torch.zeros(3, 80, dtype=torch.uint8)).shape
    torch.Size([3, 80])
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        embedding: int = 8,
        hidden: int = 256,
        layers: int = 2,
        dp: bool = False,
    ) -> None:
        super().__init__()
        _sequence_length("char_lstm", input_shape)
        for key, value in (("embedding", embedding), ("hidden", hidden), ("layers", layers)):
            require_int("char_lstm", key, value, minimum=1)
        self.embed = nn.Embedding(num_classes, embedding)
        lstm = DPLSTM if dp else nn.LSTM
        self.lstm = lstm(embedding, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, V)`` of the character after each window ``x`` ``(batch, L)``."""
        out, _ = self.lstm(self.embed(x.long()))
        return self.head(out[:, -1])


class _Block(nn.Module):
    """One pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=-1)
        shape = (b, length, self.heads, width // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(width // self.heads)
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        attended = F.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        x = x + self.proj(attended.transpose(1, 2).reshape(b, length, width))
        return x + self.down(F.relu(self.up(self.norm2(x))))


@MODELS.register("char_transformer")
class CharTransformer(nn.Module):
    r"""A small causal transformer over characters; logits of the next one after the window.

    Softmax attention with the causal mask (position :math:`t` attends to :math:`s \le t`),
    :math:`\mathrm{softmax}(QK^\top/\sqrt{d_h})V` per head (Vaswani et al., "Attention Is All
    You Need", NeurIPS 2017), pre-norm blocks (as GPT-2), the last position read out.

    Parameters
    ----------
    input_shape : tuple[int]
        ``(L,)``: characters per window (the position table's size).
    num_classes : int
        Vocabulary size ``V``.
    width : int
        Model width (divisible by ``heads``).
    heads : int
        Attention heads.
    layers : int
        Transformer blocks.

    Examples
    --------
    >>> model = CharTransformer((80,), 80, width=16, heads=2, layers=1)
    >>> model(torch.zeros(3, 80, dtype=torch.uint8)).shape
    torch.Size([3, 80])
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: int = 64,
        heads: int = 4,
        layers: int = 2,
    ) -> None:
        super().__init__()
        length = _sequence_length("char_transformer", input_shape)
        for key, value in (("width", width), ("heads", heads), ("layers", layers)):
            require_int("char_transformer", key, value, minimum=1)
        if width % heads:
            raise InvalidSettingError(
                f"char_transformer needs width divisible by heads, got width={width}, heads={heads}"
            )
        self.embed = nn.Embedding(num_classes, width)
        self.position = nn.Embedding(length, width)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, V)`` of the character after each window ``x`` ``(batch, L)``."""
        positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        h = self.embed(x.long()) + self.position(positions)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h[:, -1]))
