"""Backdoor attacks (BadNets), their shared trigger logic, and the attack success rate."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from fedsim.attacks.local import DataPoisoning, as_delta, check_data, keep_count, neurotoxin_mask
from fedsim.attacks.registry import ATTACKS
from fedsim.errors import InvalidSettingError
from fedsim.validation import is_integer, is_real, require_int, require_real

__all__ = ["BadNets", "Backdoor", "backdoor_asr", "backdoor_lifespan"]


class Backdoor(DataPoisoning):
    r"""Shared logic of trigger backdoors: stamping, poisoning, boosting and Neurotoxin.

    The global trigger is the ``h × w`` rectangle of pixels (all channels) whose top-left
    corner is ``trigger_position``; it is split into ``num_pieces`` local pieces by listing its
    pixels row by row and cutting the list into ``num_pieces`` contiguous, near-equal chunks
    (the first ones one pixel longer when the count does not divide). A malicious client with
    ``attacker_index`` *i* stamps piece :math:`i \bmod` ``num_pieces``; :meth:`stamp` (used
    to measure the attack success rate) stamps the whole trigger.

    After local training the update is transformed as

    .. math:: \tilde\Delta = \gamma \cdot (M \odot \Delta),

    where :math:`\gamma` is ``boost`` and :math:`M` the Neurotoxin mask (all ones when
    ``neurotoxin`` is 0 or no reference is given): :math:`M_j = 1` for the
    :math:`k = \max(1, \lfloor p d + \tfrac12 \rfloor)` coordinates *j* with the smallest
    :math:`|r_j|`, where :math:`r` is the reference update (the last change of the global
    model), :math:`p` the ``neurotoxin`` fraction and :math:`d` the number of parameters.

    Model replacement (Bagdasaryan et al.) sends :math:`X' = \gamma(X - G) + G`, i.e. the
    delta :math:`\gamma\,\Delta`; with a FedAvg server step
    :math:`G \leftarrow G + \tfrac{\eta}{n}\sum_i \Delta_i` the backdoored model replaces the
    global one when :math:`\gamma \approx n/\eta` (*n* clients per round, :math:`\eta` the
    server learning rate).

    Parameters
    ----------
    target : int
        The class that triggered inputs are relabelled to (≥ 0).
    trigger_size : int or sequence of two ints
        ``h`` or ``[h, w]`` of the global trigger rectangle (each ≥ 1).
    trigger_position : sequence of two ints or None
        ``[row, col]`` of the trigger's top-left pixel (each ≥ 0). ``None``: the bottom-right
        corner with a one-pixel margin, ``[H − h − 1, W − w − 1]`` for an ``H × W`` image.
    trigger_value : float or None
        The value written into every channel of the trigger pixels. ``None``: the maximum of
        the tensor being stamped (its brightest value, e.g. white for normalised images).
    poison_fraction : float
        :math:`0 < q \le 1`: the client stamps and relabels
        ``keep_count(q, N) = max(1, ⌊qN + ½⌋)`` of its ``N`` samples, drawn without
        replacement with the client's generator (samples already of the target class may be
        drawn; they are stamped and keep their label).
    boost : float
        :math:`\gamma > 0`; 1 sends the update unscaled (plain BadNets).
    neurotoxin : float
        :math:`0 \le p \le 1`, the fraction of coordinates kept; 0 turns Neurotoxin off.
    num_pieces : int
        Number of local pieces the global trigger is split into (1 for BadNets).
    """

    def __init__(
        self,
        target: int = 0,
        trigger_size: int | Sequence[int] = 2,
        trigger_position: Sequence[int] | None = None,
        trigger_value: float | None = None,
        poison_fraction: float = 0.5,
        boost: float = 1.0,
        neurotoxin: float = 0.0,
        num_pieces: int = 1,
    ) -> None:
        who = self.name
        require_int(who, "target (a class index)", target, minimum=0)
        size = _int_pair(trigger_size, who, "trigger_size", minimum=1)
        position = (
            None
            if trigger_position is None
            else _int_pair(trigger_position, who, "trigger_position", minimum=0, scalar=False)
        )
        if trigger_value is not None and not is_real(trigger_value):
            raise InvalidSettingError(
                f"{who} needs trigger_value to be a finite number or None, got {trigger_value!r}"
            )
        require_real(who, "poison_fraction", poison_fraction, low=0.0, low_open=True, high=1.0)
        require_real(who, "boost", boost, low=0.0, low_open=True)
        # neurotoxin: the fraction of coordinates kept, 0 = off
        require_real(who, "neurotoxin", neurotoxin, low=0.0, high=1.0)
        if not is_integer(num_pieces) or not 1 <= num_pieces <= size[0] * size[1]:
            raise InvalidSettingError(
                f"{who} needs 1 ≤ num_pieces ≤ the trigger's {size[0] * size[1]} pixels, "
                f"got {num_pieces!r}"
            )
        self.target = int(target)
        self.trigger_size = size
        self.trigger_position = position
        self.trigger_value = None if trigger_value is None else float(trigger_value)
        self.poison_fraction = float(poison_fraction)
        self.boost = float(boost)
        self.neurotoxin = float(neurotoxin)
        self.num_pieces = int(num_pieces)

    @property
    def uses_reference(self) -> bool:
        """True when Neurotoxin is on (it needs the last global change as reference)."""
        return self.neurotoxin > 0

    def trigger_mask(self, height: int, width: int, piece: int | None = None) -> torch.Tensor:
        """Boolean ``(height, width)`` mask of the global trigger, or of local ``piece``.

        Raises
        ------
        InvalidSettingError
            The trigger does not fit an image of this size, or ``piece`` is out of range.
        """
        h, w = self.trigger_size
        row, col = self.trigger_position or (height - h - 1, width - w - 1)
        if row < 0 or col < 0 or row + h > height or col + w > width:
            raise InvalidSettingError(
                f"{self.name}: a {h}×{w} trigger at [row, col]=[{row}, {col}] does not fit a "
                f"{height}×{width} image; choose a smaller trigger_size or another "
                "trigger_position"
            )
        mask = torch.zeros(height, width, dtype=torch.bool)
        if piece is None:
            mask[row : row + h, col : col + w] = True
            return mask
        if not is_integer(piece) or not 0 <= piece < self.num_pieces:
            raise InvalidSettingError(
                f"{self.name}: piece must lie in [0, {self.num_pieces}), got {piece!r}"
            )
        chunk = torch.tensor_split(torch.arange(h * w), self.num_pieces)[piece]
        mask[row + torch.div(chunk, w, rounding_mode="floor"), col + chunk % w] = True
        return mask

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """Return a copy of ``x`` (``(..., H, W)``) with the whole trigger stamped."""
        mask = self.trigger_mask(x.shape[-2], x.shape[-1]).to(x.device)
        return torch.where(mask, self.fill_value(x), x)

    def poison(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        attacker_index: int,
        num_attackers: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stamp this attacker's piece on a random ``poison_fraction`` of samples, relabel them.

        Returns new tensors ``(x', y')``; the inputs are not modified.
        """
        check_data(x, y, self.name)
        require_int(self.name, "num_attackers", num_attackers, minimum=1)
        if not is_integer(attacker_index) or not 0 <= attacker_index < num_attackers:
            raise InvalidSettingError(
                f"{self.name} needs 0 ≤ attacker_index < num_attackers={num_attackers}, "
                f"got {attacker_index!r}"
            )
        n = x.shape[0]
        if n == 0:
            return x.clone(), y.clone()
        piece = None if self.num_pieces == 1 else attacker_index % self.num_pieces
        mask = self.trigger_mask(x.shape[-2], x.shape[-1], piece)
        chosen = torch.randperm(n, generator=generator)[: keep_count(self.poison_fraction, n)]
        selected = torch.zeros(n, dtype=torch.bool)
        selected[chosen] = True
        where = selected.to(x.device).view(n, 1, 1, 1) & mask.to(x.device)
        x_out = torch.where(where, self.fill_value(x), x)
        y_out = y.clone()
        y_out[chosen.to(y.device)] = self.target
        return x_out, y_out

    def transform_update(
        self,
        delta: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Return :math:`\gamma (M \odot \Delta)` (see the class docstring).

        ``reference`` (shape ``(d,)``) is the last change of the global model; it is only read
        when Neurotoxin is on, and ``None`` (e.g. in the first round) leaves the update
        unmasked.
        """
        out = as_delta(delta, self.name)
        if self.neurotoxin > 0 and reference is not None:
            if reference.shape != out.shape:
                raise InvalidSettingError(
                    f"{self.name}: reference must have the update's shape {tuple(out.shape)}, "
                    f"got {tuple(reference.shape)}"
                )
            reference = reference.to(device=out.device, dtype=torch.float64)
            mask = neurotoxin_mask(reference, self.neurotoxin)
            out = torch.where(mask, out, torch.zeros_like(out))
        return out * self.boost

    def fill_value(self, x: torch.Tensor) -> torch.Tensor:
        """Return the value to stamp into ``x``: ``trigger_value``, else ``x.max()``."""
        value = x.max() if self.trigger_value is None else self.trigger_value
        return torch.as_tensor(value, dtype=x.dtype, device=x.device)


@ATTACKS.register("backdoor")
class BadNets(Backdoor):
    r"""BadNets backdoor: stamp a pixel patch on some samples and relabel them to ``target``.

    A random ``poison_fraction`` of the client's samples get the trigger (an ``h × w`` patch
    set to ``trigger_value`` in every channel) and the label ``target``; the client trains on
    them with the honest procedure. Optionally the update is boosted (model replacement,
    Bagdasaryan et al.) and restricted to the coordinates the benign clients change least
    (Neurotoxin, Zhang et al.): :math:`\tilde\Delta = \gamma (M \odot \Delta)`; see
    :class:`Backdoor` for every symbol and setting.

    Parameters
    ----------
    target, trigger_size, trigger_position, trigger_value, poison_fraction, boost, neurotoxin
        As in :class:`Backdoor`.

    Examples
    --------
    >>> attack = BadNets(target=1, trigger_size=2, poison_fraction=1.0)
    >>> x, y = torch.zeros(2, 1, 5, 5), torch.tensor([0, 3])
    >>> xp, yp = attack.poison(x, y, attacker_index=0, num_attackers=1,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> yp.tolist()
    [1, 1]
    >>> attack.trigger_mask(5, 5).int().tolist()  # bottom-right, one-pixel margin
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]
    >>> BadNets(boost=10.0).transform_update(torch.tensor([0.5, -1.0])).tolist()
    [5.0, -10.0]

    References
    ----------
    Gu, Dolan-Gavitt, Garg. BadNets: Identifying Vulnerabilities in the Machine Learning Model
    Supply Chain. arXiv:1708.06733, 2017.
    Bagdasaryan, Veit, Hua, Estrin, Shmatikov. How To Backdoor Federated Learning.
    AISTATS 2020.
    Zhang, Panda, Song, Yang, Mahoney, Mittal, Ramchandran, Gonzalez. Neurotoxin: Durable
    Backdoors in Federated Learning. ICML 2022.
    """

    name = "backdoor"

    def __init__(
        self,
        target: int = 0,
        trigger_size: int | Sequence[int] = 2,
        trigger_position: Sequence[int] | None = None,
        trigger_value: float | None = None,
        poison_fraction: float = 0.5,
        boost: float = 1.0,
        neurotoxin: float = 0.0,
    ) -> None:
        super().__init__(
            target=target,
            trigger_size=trigger_size,
            trigger_position=trigger_position,
            trigger_value=trigger_value,
            poison_fraction=poison_fraction,
            boost=boost,
            neurotoxin=neurotoxin,
            num_pieces=1,
        )


def backdoor_asr(
    predict: Callable[[torch.Tensor], torch.Tensor],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    attack: Backdoor,
    *,
    batch_size: int = 1024,
) -> float:
    r"""Attack success rate of a backdoor on a test set.

    .. math:: \mathrm{ASR} = \frac{|\{i : y_i \ne t,\ \hat y(\mathrm{stamp}(x_i)) = t\}|}
              {|\{i : y_i \ne t\}|}

    Only samples whose true label :math:`y_i` differs from the target :math:`t` count; each is
    stamped with the *whole* trigger (for DBA, the global one).

    Parameters
    ----------
    predict : callable
        Maps a batch of inputs to predicted labels ``(B,)`` (or logits ``(B, C)``, whose
        argmax is taken). Called in batches of ``batch_size``, e.g. under ``torch.no_grad``.
    x_test, y_test : torch.Tensor
        Test inputs ``(N, C, H, W)`` and labels ``(N,)``.
    attack : Backdoor
        The backdoor whose trigger and target are tested.
    batch_size : int
        Number of samples per ``predict`` call.

    Returns
    -------
    float
        The ASR in ``[0, 1]``.

    Raises
    ------
    InvalidSettingError
        No test sample has a label other than the target.

    Examples
    --------
    >>> attack = BadNets(target=0, trigger_size=1, trigger_position=[0, 0], trigger_value=1.0)
    >>> predict = lambda x: torch.where(x[:, 0, 0, 0] == 1.0, 0, 1)  # 0 iff triggered
    >>> backdoor_asr(predict, torch.zeros(4, 1, 3, 3), torch.tensor([0, 1, 2, 0]), attack)
    1.0
    """
    check_data(x_test, y_test, "backdoor_asr")
    require_int("backdoor_asr", "batch_size", batch_size, minimum=1)
    keep = y_test != attack.target
    total = int(keep.sum())
    if total == 0:
        raise InvalidSettingError(
            f"backdoor_asr: every test label is the target class {attack.target}; "
            "the ASR needs samples of other classes"
        )
    x_kept = x_test[keep]
    mask = attack.trigger_mask(x_test.shape[-2], x_test.shape[-1])
    value = attack.fill_value(x_test)
    hits = 0
    for start in range(0, total, batch_size):
        batch = x_kept[start : start + batch_size]
        pred = predict(torch.where(mask.to(batch.device), value.to(batch.device), batch))
        if pred.ndim == 2:
            pred = pred.argmax(dim=1)
        hits += int((pred.reshape(-1) == attack.target).sum())
    return hits / total


def _int_pair(
    value: object, who: str, key: str, *, minimum: int, scalar: bool = True
) -> tuple[int, int]:
    if scalar and is_integer(value):
        pair: tuple[object, ...] = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = ()
    if len(pair) != 2 or not all(is_integer(v) and v >= minimum for v in pair):
        shape = "an int or [h, w]" if scalar else "[row, col]"
        raise InvalidSettingError(
            f"{who} needs {key} to be {shape} of integers ≥ {minimum}, got {value!r}"
        )
    return (int(pair[0]), int(pair[1]))


def backdoor_lifespan(
    asr: Mapping[int, float], last_poisoned: int, threshold: float = 0.5
) -> int | None:
    r"""Rounds a backdoor survives after the last poisoned round.

    .. math:: L = \min\{\, r > r_p : \mathrm{ASR}_r < \theta \,\} - r_p

    where :math:`r_p` is the last round in which a malicious client sent a poisoned update,
    :math:`\mathrm{ASR}_r` the attack success rate of the global model after round *r* and
    :math:`\theta` the ``threshold`` (0.5). ``None`` when the ASR stays at or above
    :math:`\theta` in every measured round after :math:`r_p` (the backdoor outlives the run).
    A backdoor that never reached :math:`\theta` gets 1 (it is gone the round after).

    Parameters
    ----------
    asr : mapping of int to float
        The ASR by round.
    last_poisoned : int
        :math:`r_p \ge 1`.
    threshold : float
        :math:`\theta \in (0, 1]`.

    Raises
    ------
    InvalidSettingError
        ``last_poisoned`` or ``threshold`` out of range.

    Examples
    --------
    >>> backdoor_lifespan({3: 0.99, 4: 0.9, 5: 0.7, 6: 0.4, 7: 0.2}, last_poisoned=3)
    3
    >>> backdoor_lifespan({3: 0.99, 4: 0.9}, last_poisoned=3) is None
    True

    References
    ----------
    Zhang, Panda, Song, Yang, Mahoney, Mittal, Ramchandran, Gonzalez. Neurotoxin: Durable
    Backdoors in Federated Learning. ICML 2022 (durability as rounds after poisoning stops).
    """
    require_int("backdoor lifespan", "last_poisoned", last_poisoned, minimum=1)
    require_real("backdoor lifespan", "threshold", threshold, low=0.0, high=1.0, low_open=True)
    for r in sorted(asr):
        if r > last_poisoned and asr[r] < threshold:
            return r - last_poisoned
    return None
