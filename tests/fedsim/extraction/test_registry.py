"""The extraction-attack registry: scenario names, helpful misses, no duplicates."""

from __future__ import annotations

import pytest

from fedsim.errors import UnknownNameError
from fedsim.extraction import EXTRACTION_ATTACKS, Copycat, ExtractionAttack, KnockoffNets


def test_scenario_names_resolve_to_their_classes() -> None:
    assert EXTRACTION_ATTACKS.get("knockoff") is KnockoffNets
    assert EXTRACTION_ATTACKS.get("copycat") is Copycat
    for name in EXTRACTION_ATTACKS.names():
        assert EXTRACTION_ATTACKS.get(name).name == name  # the registry name is the class's


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="known: copycat, knockoff"):
        EXTRACTION_ATTACKS.get("jacobian")


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        EXTRACTION_ATTACKS.register("knockoff")(ExtractionAttack)
    assert EXTRACTION_ATTACKS.get("knockoff") is KnockoffNets
