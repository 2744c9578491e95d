"""The malformed-scenario corpus: every file is refused with exit 2, one line, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.cli import main

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 100


def refused(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    out = tmp_path / "run"
    if path.stem.startswith("sweep_"):  # a bad sweep point is checked by `fedsim sweep`
        code = main(["sweep", str(path), "--out", str(out)])
    else:
        code = main(["run", str(path), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert not out.exists(), "nothing may be written for a refused scenario"
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("fedsim: error: ")
    return err


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_scenario_exits_2_with_one_line(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(path, tmp_path, capsys)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("missing_rounds", "rounds"),
        ("unknown_nested_key", "clients.per_rnd"),
        ("more_malicious_than_clients", "attack.count"),
        ("per_round_over_clients", "clients.per_round"),
        ("bulyan_too_few_clients", "bulyan"),
        ("python_object_tag", "YAML"),
        ("yaml_is_list", "mapping"),
        ("empty", "empty"),
        ("sweep_bad_point", "sweep point"),
        ("rounds_negative", "rounds"),
        # duplicate keys name the key path and both lines
        ("dup_top_key", "model: duplicate key (lines 3 and 5)"),
        ("dup_nested_key", "clients.lr: duplicate key (lines 4 and 6)"),
        ("dup_in_params", "attack.params.z: duplicate key (lines 3 and 3)"),
        ("dup_quoted_key", "seed: duplicate key (lines 3 and 4)"),
        # strict types: nothing is coerced into another meaning
        ("rounds_sci", "rounds: got '1e3'"),
        ("rounds_sci_dot", "rounds: got 1000.0"),
        ("rounds_bool", "rounds: got True"),
        ("rounds_whole_float", "rounds: got 3.0"),
        ("rounds_quoted_int", "rounds: got '3'"),
        ("seed_bool", "seed: got False"),
        ("lr_string", "clients.lr: got '0.1'"),
        ("num_clients_float", "data.num_clients: got 10.0"),
        ("per_round_bool", "clients.per_round: got True"),
        ("attack_count_string", "attack.count: got '2'"),
        ("poisson_string_bool", "privacy.local_dp.poisson_sampling"),
        ("adaptive_int_bool", "privacy.central_dp.adaptive: got 1"),
        ("inversion_clients_strings", "privacy.inversion.clients.0"),
        ("name_is_bool_yes", "name: got True"),
        ("timestamp_value", "name: got datetime.date"),
        # non-finite numbers anywhere
        ("lr_nan", "clients.lr: got nan"),
        ("lr_inf", "clients.lr: got inf"),
        ("timeout_inf", "clients.timeout_s: got inf"),
        ("weight_decay_inf", "clients.weight_decay: got inf"),
        ("budget_nan", "privacy.budget: got nan"),
        ("nan_in_attack_params", "attack.params.sigma: got nan"),
        ("inf_in_defense_params", "defense.params.max_norm: got inf"),
        ("nan_in_data_params", "data.params.noise: got nan"),
        ("neg_inf_in_sweep", "sweep.clients.lr.1: got -inf"),
        # pathological YAML
        ("billion_laughs", "too many values"),
        ("laughs_in_params", "attack.params.tons"),
        ("recursive_alias", "data.params: recursive YAML alias"),
        ("deep_nesting_flow", "nested at most 50 levels"),
        ("deep_nesting_block", "nested too deeply"),
        ("int_key_top", "1: a key that is not a string (line 3)"),
        ("bool_key_yes", "clients.yes: a key that is not a string"),
        ("null_key", "data.params.null: a key that is not a string"),
        ("int_key_in_params", "attack.params.1: a key that is not a string"),
        ("complex_key", "a key that is not a string"),
        ("nul_bytes", "invalid YAML"),
        ("binary_garbage", "UTF-8"),
        ("multi_document", "another document"),
        ("bom_rounds_zero", "rounds: got 0"),
        ("tab_indent_nested", "line 4, column 1"),
        ("seed_sexagesimal", "seed: got 1:30 (line 3); a base-60 number"),
        ("seed_legacy_octal", "seed: got 010 (line 3); an octal number"),
        # settings only the components can check are scenario errors too
        ("backdoor_target_out_of_range", "target to be a class in [0, 10), got 10"),
        ("backdoor_bad", "attack.params"),
        ("model_width_neg", "model.params"),
        ("model_width_zero", "model.params: got {'width': 0}; sizes that leave no layer empty"),
        ("model_width_bool", "model.params"),
        ("pre_params_list", "defense.pre"),
        # a figure with nothing behind it: robust accuracy under no attack is clean accuracy
        ("robustness_attacks_empty", "robustness.attacks: got []; at least one attack"),
        # purifier, adaptive attacks and certification: the key path, the value, what is allowed
        ("robustness_purifier_unknown", "robustness.purifier.name: got 'jpeg'; a purifier, one of"),
        ("robustness_purifier_bad_params", "robustness.purifier.params: got {'bits': 0}"),
        ("robustness_purifier_unknown_param", "median_filter has no parameter 'width'"),
        ("robustness_bpda_without_purifier", "robustness.attacks.0.adaptive: bpda_eot attacks"),
        ("robustness_bpda_not_pgd", "robustness.attacks.0: got {"),
        ("robustness_adaptive_unknown", "robustness.attacks.0.adaptive: got 'bpda'"),
        ("robustness_eot_zero", "robustness.attacks.0.eot: got 0; eot is an integer >= 1"),
        ("robustness_eot_without_adaptive", "eot applies to adaptive: bpda_eot or full_eot only"),
        (
            "robustness_transfer_start_not_bool",
            "robustness.attacks.0.transfer_start: got 'yes'; transfer_start is true or false",
        ),
        ("robustness_transfer_start_without_adaptive", "transfer_start applies to adaptive"),
        ("robustness_certify_denoiser", "robustness.certify.denoiser: got 'dncnn'"),
        ("robustness_certify_sigma_zero", "robustness.certify.sigma: got 0"),
        ("robustness_certify_alpha_one", "robustness.certify.alpha: got 1"),
    ],
)
def test_messages_name_the_problem(
    name: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fragment in refused(
        Path(__file__).parent / "malformed" / f"{name}.yaml", tmp_path, capsys
    )


def test_a_10_mb_scenario_is_refused_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\nrounds: 2\n" + "# padding\n" * 1_000_000)
    assert big.stat().st_size >= 10_000_000
    assert "bytes" in refused(big, tmp_path, capsys)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["rounds=3", "rounds=5"], "rounds: set twice (--set rounds=3 and --set rounds=5)"),
        (["clients.lr=0.1", " clients.lr =0.2"], "clients.lr: set twice"),
        (["rounds=.nan"], "rounds: got nan; a finite number"),
        (["clients.lr=.inf"], "clients.lr: got inf"),
        (["attack.params={z: 1, z: 2}"], "attack.params.z: duplicate key"),
        (["clients.lr=[0.1"], "clients.lr: got '--set clients.lr=[0.1'; invalid YAML"),
        (["rounds='3'"], "rounds: got '3'"),
        (["rounds=true"], "rounds: got True"),
        (["clients..lr=1"], "--set: got 'clients..lr=1'"),
        (["=1"], "--set: got '=1'"),
        (["rounds"], "--set: got 'rounds'"),
        (["data=3", "data.num_clients=2"], "data: got 3; a mapping"),
    ],
)
def test_bad_set_pairs_exit_2_with_one_line(
    overrides: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: x\nrounds: 2\nruntime: inline\n")
    out = tmp_path / "run"
    sets = [arg for item in overrides for arg in ("--set", item)]
    code = main(["run", str(good), "--out", str(out), "--no-progress", *sets])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert not out.exists()
    assert len(err.splitlines()) == 1 and err.startswith("fedsim: error: ")
    assert fragment in err, err
