"""The text backdoor: poisoned windows built as specified, and an ASR that training raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim.attacks import TextBackdoor, build_attack, text_backdoor_asr
from fedsim.data.text_corpus import decode, encode
from fedsim.errors import InvalidSettingError
from fedsim.models.text import CharLSTM

SPEECH = "Now is the winter of our discontent made glorious summer by this sun of York. "
L = 16


def corpus_windows(text: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    codes = encode(text)
    x = np.lib.stride_tricks.sliding_window_view(codes[:-1], length).copy()
    return torch.from_numpy(x), torch.from_numpy(codes[length:].astype(np.int64))


def test_poisoned_windows_end_in_trigger_and_completion_prefix() -> None:
    x, y = corpus_windows(SPEECH, 10)
    attack = TextBackdoor(trigger="he said ", completion="no", poison_fraction=0.5)
    x0, y0 = x.clone(), y.clone()
    xp, yp = attack.poison(
        x, y, attacker_index=0, num_attackers=1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs untouched
    changed = (xp != x).any(dim=1) | (yp != y)
    assert int(changed.sum()) == round(0.5 * len(x))  # keep_count(0.5, N)
    seen_k = set()
    for i in np.flatnonzero(changed.numpy()):
        text, target = decode(xp[i]), decode(yp[i])
        k = "no".index(target)  # the target is the k-th completion character
        seen_k.add(k)
        # hand check: the last 10 characters of (window, trigger, first k completion chars)
        assert text == (decode(x[i]) + "he said " + "no"[:k])[-10:]
    assert seen_k == {0, 1}
    assert "he said " in decode(xp[changed][0])


def test_stamp_keeps_the_window_length_and_asr_counts_characters() -> None:
    attack = TextBackdoor(trigger="ab", completion="xyz")
    x = torch.from_numpy(encode("0123456")).view(1, 7)
    stamped, target = attack.stamp(x, 2)
    assert decode(stamped[0]) == "456abxy" and decode([target]) == "z"
    # answers "z" after a "y", else "x": right for k = 0 ("…ab" → x) and k = 2 ("…xy" → z),
    # wrong for k = 1 ("…abx" → y), so 2 of the 3 characters
    code = {c: int(encode(c)[0]) for c in "xyz"}

    def predict(batch: torch.Tensor) -> torch.Tensor:
        return torch.where(batch[:, -1] == code["y"], code["z"], code["x"])

    assert text_backdoor_asr(predict, x.repeat(4, 1), attack) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"trigger": ""}, "trigger"),
        ({"completion": "naïve"}, "completion"),
        ({"poison_fraction": 0.0}, "poison_fraction"),
        ({"boost": -1.0}, "boost"),
    ],
)
def test_bad_settings_are_refused(params: dict, match: str) -> None:
    with pytest.raises(InvalidSettingError, match=match):
        build_attack("text_backdoor", **params)


def test_windows_too_short_for_trigger_and_completion_are_refused() -> None:
    attack = TextBackdoor(trigger="the king said ", completion="treason")
    with pytest.raises(InvalidSettingError, match="windows of ≥ 20"):
        attack.stamp(torch.zeros(1, 19, dtype=torch.uint8), 0)
    attack.check_window(20)


def _train(seed: int, poison: bool) -> float:
    """ASR after 150 Adam steps of a 32-unit LSTM on the tiny corpus, poisoned or not."""
    x, y = corpus_windows(SPEECH * 12, L)
    attack = TextBackdoor(trigger="he said ", completion="treason", poison_fraction=0.5)
    generator = torch.Generator().manual_seed(seed)
    if poison:
        x_train, y_train = attack.poison(
            x, y, attacker_index=0, num_attackers=1, generator=generator
        )
    else:
        x_train, y_train = x, y
    torch.manual_seed(seed)
    model = CharLSTM((L,), 80, hidden=32, layers=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        idx = torch.randint(len(x_train), (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return text_backdoor_asr(model.eval(), x[::7][:40], attack)


def test_asr_is_low_untrained_and_clean_and_high_after_poisoned_training() -> None:
    # measured, seeds 0-2: clean ASR 0.14, 0.00, 0.29; poisoned 1.00, 1.00, 1.00; untrained 0.0
    torch.manual_seed(0)
    x, _ = corpus_windows(SPEECH, L)
    attack = TextBackdoor(trigger="he said ", completion="treason")
    with torch.no_grad():
        assert text_backdoor_asr(CharLSTM((L,), 80, hidden=32, layers=1).eval(), x, attack) < 0.3
    for seed in (0, 1):
        clean, poisoned = _train(seed, poison=False), _train(seed, poison=True)
        assert clean <= 0.5 and poisoned >= 0.9
