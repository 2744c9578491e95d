import math

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from fedsim.errors import InvalidSettingError
from fedsim.privacy import PrivacyLedger, epsilon_from_history

DELTA = 1e-5


def test_empty_ledger_has_zero_epsilon():
    ledger = PrivacyLedger()

    assert ledger.epsilon(DELTA) == 0.0
    assert ledger.epsilon(DELTA, accountant="prv") == 0.0
    assert ledger.steps == 0 and len(ledger) == 0


def test_client_skipping_rounds_matches_opacus_step_by_step():
    # Prepare: a client that takes part in some rounds only; one round uses other settings.
    participates = [True, True, False, True, False, False, True]
    settings = [(1.1, 0.1, 5), (1.1, 0.1, 5), None, (0.9, 0.2, 3), None, None, (1.1, 0.1, 5)]
    ledger = PrivacyLedger()
    reference = RDPAccountant()
    previous = 0.0

    for takes_part, setting in zip(participates, settings, strict=True):
        # Execute: one round
        if takes_part:
            sigma, q, steps = setting
            ledger.record(sigma, q, steps)
            for _ in range(steps):
                reference.step(noise_multiplier=sigma, sample_rate=q)
        eps = ledger.epsilon(DELTA)

        # Assert: equal to Opacus' own accountant, grows only when the client trains
        assert ledger.history == reference.history
        assert eps == reference.get_epsilon(DELTA)
        if takes_part:
            assert eps > previous
        else:
            assert eps == previous
        previous = eps

    assert ledger.steps == 18


def test_prv_matches_opacus_prv_accountant():
    ledger = PrivacyLedger()
    reference = PRVAccountant()
    for sigma, q, steps in [(1.0, 0.1, 4), (1.0, 0.1, 4), (1.5, 0.05, 6)]:
        ledger.record(sigma, q, steps)
        for _ in range(steps):
            reference.step(noise_multiplier=sigma, sample_rate=q)

    assert ledger.history == reference.history
    assert ledger.epsilon(DELTA, accountant="prv") == pytest.approx(reference.get_epsilon(DELTA))
    # RDP's conversion is looser than PRV's numerical composition.
    assert ledger.epsilon(DELTA, accountant="prv") < ledger.epsilon(DELTA, accountant="rdp")


def test_list_and_dict_round_trips():
    ledger = PrivacyLedger()
    ledger.record(1.1, 0.1, 20)
    ledger.record(0.8, 0.25, 7)
    ledger.record(0.8, 0.25, 0)  # records nothing

    flat = ledger.to_list()
    assert flat == [1.1, 0.1, 20.0, 0.8, 0.25, 7.0]
    assert all(isinstance(v, float) for v in flat)
    assert PrivacyLedger.from_list(flat) == ledger
    assert PrivacyLedger.from_dict(ledger.to_dict()) == ledger
    assert PrivacyLedger.from_list([]) == PrivacyLedger()
    assert PrivacyLedger.from_list(flat).epsilon(DELTA) == ledger.epsilon(DELTA)


def test_zero_noise_gives_infinite_epsilon():
    ledger = PrivacyLedger()
    ledger.record(0.0, 0.1, 3)

    assert math.isinf(ledger.epsilon(DELTA))


@pytest.mark.parametrize(
    "call",
    [
        lambda: PrivacyLedger.from_list([1.0, 0.1]),
        lambda: PrivacyLedger.from_list([1.0, 0.1, 2.5]),
        lambda: PrivacyLedger().record(1.0, 0.0, 3),
        lambda: PrivacyLedger().record(1.0, 1.5, 3),
        lambda: PrivacyLedger().record(-1.0, 0.1, 3),
        lambda: PrivacyLedger().record(1.0, 0.1, -1),
        lambda: PrivacyLedger().epsilon(0.0),
        lambda: epsilon_from_history([(1.0, 0.1, 3)], DELTA, accountant="gdp"),
    ],
)
def test_invalid_inputs_raise(call):
    with pytest.raises(InvalidSettingError):
        call()
