import pytest
import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion import FGSM, PGD, AutoAttack, EvasionAttack, robust_accuracy


class Replace(EvasionAttack):
    """A fake attack that returns fixed inputs (to build hand-checked cases)."""

    name = "fake"

    def __init__(self, out: torch.Tensor, eps: float) -> None:
        self.out, self.eps = out, eps

    def generate(self, model, x, y, generator):
        return self.out


def test_worst_case_is_per_sample_not_the_minimum_of_means():
    # identity model on 2 features: prediction = argmax(x). Four samples, all correct clean.
    model = nn.Identity()
    x = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    y = torch.tensor([0, 0, 1, 1])
    a = x.clone()
    a[0] = torch.tensor([0.1, 0.9])  # attack A fools sample 0
    b = x.clone()
    b[2] = torch.tensor([0.9, 0.1])  # attack B fools sample 2
    result = robust_accuracy(model, x, y, [Replace(a, 0.1), Replace(b, 0.2)], torch.Generator())
    assert result.clean == 1.0
    assert result.per_attack == {"fake-linf-0.1": 0.75, "fake-linf-0.2": 0.75}
    assert result.worst_case == 0.5  # min of means would say 0.75
    assert result.robust.tolist() == [False, True, False, True]
    assert result.figures()["worst_case"] == 0.5
    # the reliability diagrams behind ece and ece_adversarial: each sample's worst example
    # (samples 0 and 2 fooled) makes half the adversarial predictions wrong
    clean, adversarial = result.reliability, result.reliability_adversarial
    assert (clean.ece, adversarial.ece) == (result.ece, result.ece_adversarial)
    assert sum(clean.count) == sum(adversarial.count) == 4
    hits = sum(a * c for a, c in zip(adversarial.accuracy, adversarial.count, strict=True) if c)
    clean_hits = sum(a * c for a, c in zip(clean.accuracy, clean.count, strict=True) if c)
    assert hits == 2 and clean_hits == 4


def test_a_clean_mistake_is_never_robust():
    model = nn.Identity()
    x = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    y = torch.tensor([0, 0])  # sample 1 wrong clean; the "attack" would make it right
    fix = torch.tensor([[0.9, 0.1], [0.7, 0.3]])
    result = robust_accuracy(model, x, y, [Replace(fix, 0.1)], torch.Generator())
    assert result.clean == 0.5 and result.per_attack["fake-linf-0.1"] == 0.5
    assert result.worst_case == 0.5


def test_duplicate_labels_are_rejected(trained):
    with pytest.raises(InvalidSettingError, match="distinct labels"):
        robust_accuracy(trained.model, trained.x, trained.y, [PGD(0.1), PGD(0.1, steps=40)], None)


def test_eps_zero_gives_clean_accuracy(trained):
    result = robust_accuracy(
        trained.model, trained.x, trained.y, [FGSM(0.0), PGD(0.0, steps=3)], torch.Generator()
    )
    assert result.clean > 0.85
    assert result.per_attack == {"fgsm-0": result.clean, "pgd-linf-0": result.clean}
    assert result.worst_case == result.clean
    assert result.ece_adversarial == pytest.approx(result.ece)


def test_stronger_attacks_do_not_give_higher_accuracy(trained):
    # Carlini et al. (2019): single-step beating iterative, or accuracy not reaching 0 as ε
    # grows, signals a broken evaluation.
    model, x, y = trained.model, trained.x[:100], trained.y[:100]
    fgsm, pgd = FGSM(0.1), PGD(0.1, steps=20, restarts=2)
    aa = AutoAttack(0.1, iterations=25, square_queries=200)
    result = robust_accuracy(model, x, y, [fgsm, pgd, aa], torch.Generator().manual_seed(0))
    acc = result.per_attack
    assert (
        result.clean >= acc["fgsm-0.1"] >= acc["pgd-linf-0.1"] >= acc["autoattack-linf-0.1"] - 0.02
    )
    # the worst case over the nested sets of attacks never rises as attacks are added
    fgsm_only = robust_accuracy(model, x, y, [fgsm], torch.Generator().manual_seed(0))
    assert result.worst_case <= min(acc.values())
    assert result.worst_case <= fgsm_only.worst_case <= fgsm_only.clean
    assert set(result.seconds) == {"fgsm-0.1", "pgd-linf-0.1", "autoattack-linf-0.1"}
    assert result.ece_adversarial > result.ece  # confident mistakes under attack


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_accuracy_goes_to_zero_as_eps_grows(trained, norm):
    model, x, y = trained.model, trained.x[:100], trained.y[:100]
    scale = 1.0 if norm == "linf" else 8.0  # ℓ2 radius of the same corner-to-corner reach
    accs = [
        robust_accuracy(
            model, x, y, [PGD(e * scale, steps=20, norm=norm)], torch.Generator().manual_seed(0)
        ).worst_case
        for e in (0.02, 0.1, 0.5)
    ]
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[2] <= 0.02


def test_batched_evaluation_equals_one_batch_for_a_deterministic_attack(trained):
    model, x, y = trained.model, trained.x[:50], trained.y[:50]
    whole = robust_accuracy(model, x, y, [FGSM(0.1)], torch.Generator())
    batched = robust_accuracy(model, x, y, [FGSM(0.1)], torch.Generator(), batch_size=7)
    assert torch.equal(whole.robust, batched.robust)
    assert whole.figures() == batched.figures()
    with pytest.raises(InvalidSettingError, match="batch_size >= 1"):
        robust_accuracy(model, x, y, [FGSM(0.1)], torch.Generator(), batch_size=0)


def test_every_attack_starts_from_the_same_draws_whatever_the_order(trained):
    # common random numbers: an attack's figure does not depend on the attacks before it, and
    # the caller's generator is left where it was
    x, y = trained.x[:64], trained.y[:64]
    a, b = PGD(0.1, steps=5), PGD(0.15, steps=5, restarts=2)
    g = torch.Generator().manual_seed(0)
    forward = robust_accuracy(trained.model, x, y, [a, b], g)
    backward = robust_accuracy(trained.model, x, y, [b, a], g)
    assert forward.per_attack == backward.per_attack
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())
    alone = robust_accuracy(trained.model, x, y, [b], g)
    assert alone.per_attack[b.label] == forward.per_attack[b.label]
