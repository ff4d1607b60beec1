"""meddiff_lab/experiments/recipe_comparison.py: the training-recipe comparison at a fixed image budget, tiny sizes."""

import dataclasses
import json

import pytest

from meddiff_lab.experiments import recipe_comparison as rc

CI = rc.get_recipe_profile("ci")


@pytest.mark.parametrize(
    "arm, field, expected",
    [
        ("ε", "prediction_type", "epsilon"),
        ("ε + min-SNR-5", "min_snr_gamma", 5.0),
        ("v + min-SNR-5", "min_snr_gamma", 5.0),
        ("v, cosine schedule", "schedule", "cosine"),
        ("v (zoo recipe), seed 1", "seed", 1),
    ],
)
def test_each_arm_changes_what_its_name_says(arm, field, expected):
    reference = rc.recipe_config(CI, rc.REFERENCE_ARM)
    config = rc.recipe_config(CI, arm)
    assert getattr(config, field) == expected != getattr(reference, field)
    changed = {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(reference, f.name)}
    assert changed <= {"prediction_type", "min_snr_gamma", "schedule", "seed"}


def test_the_reference_arm_is_the_zoo_recipe_at_the_profile_sizes():
    config = rc.recipe_config(CI, rc.REFERENCE_ARM)
    assert (config.prediction_type, config.schedule, config.min_snr_gamma) == ("v_prediction", "linear", None)
    assert (config.image_size, config.batch_size, config.max_steps) == (16, 8, 8)


def test_batch_x2_sees_the_same_images_in_half_the_steps_and_lr_factors_scale():
    reference = rc.recipe_config(CI, rc.REFERENCE_ARM)
    doubled = rc.recipe_config(CI, "v, batch × 2")
    assert doubled.batch_size == 2 * reference.batch_size and doubled.max_steps == reference.max_steps // 2
    assert doubled.batch_size * doubled.max_steps == reference.batch_size * reference.max_steps == CI.images_per_arm
    assert rc.recipe_config(CI, "v, learning rate × 2").learning_rate == pytest.approx(2 * reference.learning_rate)
    assert rc.recipe_config(CI, "v, learning rate ÷ 2").learning_rate == pytest.approx(reference.learning_rate / 2)


def test_unknown_arms_and_profiles_name_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown recipe arm 'adam'.*ε \\+ min-SNR-5"):
        rc.recipe_config(CI, "adam")
    with pytest.raises(ValueError, match="expected one of ci, cpu, gpu"):
        rc.get_recipe_profile("huge")
    with pytest.raises(ValueError, match="unknown recipe arm"):
        rc.run_recipe_comparison(CI, tmp_path, arms=["adam"])


def test_a_budget_batch_x2_cannot_split_is_refused():
    with pytest.raises(ValueError, match="multiple of twice the batch"):
        dataclasses.replace(CI, images_per_arm=72)


def test_arm_slugs_are_distinct_folder_names():
    slugs = [rc.arm_slug(arm) for arm in rc.RECIPES]
    assert len(set(slugs)) == len(slugs)
    assert all(slug and slug.replace("-", "").isalnum() for slug in slugs)


@pytest.fixture(scope="module")
def two_arms(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes")
    return out, rc.run_recipe_comparison(CI, out, arms=[rc.REFERENCE_ARM, "ε"])


def test_a_run_writes_each_arm_and_lists_the_missing_ones(two_arms):
    out, results = two_arms
    assert list(results["arms"]) == [rc.REFERENCE_ARM, "ε"]
    assert set(results["missing"]) == set(rc.RECIPES) - {rc.REFERENCE_ARM, "ε"}
    for arm, result in results["arms"].items():
        assert (out / "arms" / rc.arm_slug(arm) / "result.json").is_file()
        assert result["training"]["images_seen"] == CI.images_per_arm
        assert result["training"]["steps"] == CI.steps
        assert result["fid"]["model"] > 0 and result["fid"]["floor"] > 0
        assert 0 <= result["precision"]["model"] <= 1
    assert results["arms"]["ε"]["training"]["config"]["prediction_type"] == "epsilon"


def test_finished_arms_are_read_back_not_retrained(two_arms, monkeypatch):
    out, results = two_arms

    def no_training(*args, **kwargs):
        raise AssertionError("a finished arm was trained again")

    monkeypatch.setattr(rc, "_train_arm", no_training)
    again = rc.run_recipe_comparison(CI, out, arms=[rc.REFERENCE_ARM, "ε"])
    assert again["arms"] == json.loads(json.dumps(results["arms"]))


def test_another_profile_is_refused_in_the_same_folder(two_arms):
    out, _ = two_arms
    with pytest.raises(ValueError, match="another profile.*differs in eval_images"):
        rc.run_recipe_comparison(dataclasses.replace(CI, eval_images=16), out, arms=[])


def test_markdown_has_every_arm_the_floor_and_says_what_is_missing(two_arms, tmp_path):
    _, results = two_arms
    json_path, md_path = rc.write_recipe_results(results, tmp_path)
    text = md_path.read_text(encoding="utf-8")
    assert "| v (zoo recipe) |" in text and "| ε |" in text and "| floor (real vs real) |" in text
    assert "no yardstick" in text and "not measured yet" in text and "Not run yet:" in text
    assert json.loads(json_path.read_text(encoding="utf-8"))["arms"].keys() == results["arms"].keys()


def _fake(fids: dict[str, float]) -> dict:
    return {"arms": {arm: {"fid": {"model": value}} for arm, value in fids.items()}}


def test_verdicts_need_a_difference_beyond_twice_the_seed_spread():
    results = _fake(
        {rc.REFERENCE_ARM: 10.0, rc.SEED_ARM: 11.0, "ε": 12.5, "v + min-SNR-5": 7.5, "v, cosine schedule": 11.9}
    )
    assert rc.seed_spread(results) == pytest.approx(1.0)
    assert rc.recipe_verdicts(results) == {
        "ε": "worse",
        "v + min-SNR-5": "better",
        "v, cosine schedule": "within seed spread",
    }
    assert rc.recipe_verdicts(_fake({rc.REFERENCE_ARM: 10.0, "ε": 30.0})) == {"ε": "no yardstick"}


def test_the_cli_runs_chosen_arms_and_says_which_are_missing(tmp_path, capsys):
    from meddiff_lab import cli

    code = cli.main(["experiment", "recipes", "--profile", "ci", "--out", str(tmp_path / "o"), "--arms", "ε"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "results.md" in printed and "not run yet: v (zoo recipe)" in printed
    results = json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))
    assert list(results["arms"]) == ["ε"] and results["command"].startswith("meddiff-lab experiment recipes")


def test_evaluations_at_more_steps_beside_an_arm_join_its_results(two_arms, tmp_path):
    out, results = two_arms
    folder = out / "arms" / rc.arm_slug("ε")
    row = results["arms"]["ε"]
    written = {"n": 8, "by_steps": {"6": {k: row[k] for k in ("fid", "kid_spread", "precision", "recall")}}}
    (folder / "ddim6.json").write_text(json.dumps(written), encoding="utf-8")
    try:
        gathered = rc.gather_recipe_results(CI, out)
    finally:
        (folder / "ddim6.json").unlink()
    assert list(gathered["arms"]["ε"]["more_steps"]) == ["6"]
    assert "more_steps" not in gathered["arms"][rc.REFERENCE_ARM]
    assert "| ε | 6 |" in rc.recipe_markdown(gathered)
