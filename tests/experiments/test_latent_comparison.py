"""meddiff_lab/experiments/latent_comparison.py: notebook 10's table at equal training FLOPs, on tiny sizes."""

import dataclasses
import json

import pytest
import torch

from meddiff_lab import cli
from meddiff_lab.experiments import latent_comparison as lc
from meddiff_lab.models import LatentAutoencoder

TINY = dataclasses.replace(lc.LATENT_COMPARISON_PROFILES["ci"], eval_images=8, train_images=16, budget_gflops=0.5)


def test_flops_per_step_grow_with_the_batch_and_the_image():
    net = lc._unet((16, 16), 1)
    small = lc.training_flops_per_step(net, torch.randn(2, 1, 16, 16), "epsilon")
    assert small > 0
    assert lc.training_flops_per_step(net, torch.randn(4, 1, 16, 16), "epsilon") == pytest.approx(2 * small, rel=0.01)
    assert lc.training_flops_per_step(net, torch.randn(2, 1, 32, 32), "rectified_flow") > 3.5 * small


def test_a_profile_whose_reference_steps_are_not_swept_is_refused():
    with pytest.raises(ValueError, match="reference_steps 7 must be one of step_sweep"):
        dataclasses.replace(TINY, reference_steps=7)


def test_an_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="expected one of ci, full"):
        lc.get_latent_comparison_profile("huge")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    torch.manual_seed(0)
    autoencoder = LatentAutoencoder(image_size=32, channels=(8, 8), latent_channels=4, norm_num_groups=8)
    autoencoder.fit_scale_factor(torch.rand(8, 1, 32, 32) * 2 - 1)
    out = tmp_path_factory.mktemp("latent-comparison")
    return out, lc.run_latent_comparison(TINY, autoencoder, out=out, log=lambda line: None)


@pytest.mark.slow
def test_every_arm_gets_the_same_flops_unless_capped(comparison):
    _, results = comparison
    assert list(results["arms"]) == list(lc.LATENT_ARMS)
    budget = TINY.budget_gflops
    for name, arm in results["arms"].items():
        assert not arm["capped"], name
        # ceil(budget / per step) steps: at least the budget, less than one step over it
        assert budget <= arm["training_gflops"] < budget + arm["gflops_per_step"], name
        assert set(arm["by_steps"]) == {str(s) for s in TINY.step_sweep}
    assert results["arms"]["pixel ε"]["gflops_per_step"] != results["arms"]["latent ε"]["gflops_per_step"]


@pytest.mark.slow
def test_steps_to_target_follow_the_measured_kids(comparison):
    _, results = comparison
    target = results["target_kid"]
    assert target == results["arms"]["latent v"]["by_steps"][str(TINY.reference_steps)]["kid"]
    for name, steps in results["steps_to_target"].items():
        kids = {int(s): m["kid"] for s, m in results["arms"][name]["by_steps"].items()}
        reaching = [s for s in TINY.step_sweep if kids[s] <= target]
        assert steps == (reaching[0] if reaching else None), name
    assert results["steps_to_target"]["latent v"] is not None  # it reaches its own value


@pytest.mark.slow
def test_results_are_written_with_the_floor_and_the_ceiling(comparison, tmp_path):
    out, results = comparison
    json_path, markdown_path = lc.write_latent_comparison_results(results, tmp_path)
    text = markdown_path.read_text(encoding="utf-8")
    for name in lc.LATENT_ARMS:
        assert f"| {name} |" in text
    assert "| floor (real vs real) |" in text and "ceiling" in text
    assert json.loads(json_path.read_text(encoding="utf-8"))["n"] == TINY.eval_images
    assert sorted(p.name for p in (out / "arms").glob("*.safetensors")) == sorted(
        f"{name.replace(' ', '_')}.safetensors" for name in lc.LATENT_ARMS
    )


@pytest.mark.slow
def test_a_partial_run_is_marked_incomplete_and_resumes_by_arm(tmp_path):
    torch.manual_seed(0)
    autoencoder = LatentAutoencoder(image_size=32, channels=(8, 8), latent_channels=4, norm_num_groups=8)
    autoencoder.fit_scale_factor(torch.rand(8, 1, 32, 32) * 2 - 1)
    lines = []
    first = lc.run_latent_comparison(TINY, autoencoder, out=tmp_path, arms=["pixel ε"], log=lines.append)
    assert list(first["arms"]) == ["pixel ε"] and first["missing"] == [a for a in lc.LATENT_ARMS if a != "pixel ε"]
    assert first["target_kid"] is None and first["steps_to_target"] == {"pixel ε": None}
    text = lc.latent_comparison_markdown(first)
    assert "**Incomplete:** not run yet: latent ε, latent v, latent rectified flow" in text
    assert "latent v not run yet" in text
    assert lc.arm_file(tmp_path, "pixel ε", ".json").is_file()
    assert set(first["throughput"]) == set(lc.LATENT_ARMS) and min(first["throughput"].values()) > 0

    lines.clear()
    again = lc.run_latent_comparison(TINY, autoencoder, out=tmp_path, arms=[], log=lines.append)
    assert again["arms"]["pixel ε"] == json.loads(json.dumps(first["arms"]["pixel ε"]))  # read back, not retrained
    assert any(line.startswith("pixel ε: read back") for line in lines)
    capped = lc.run_latent_comparison(
        TINY, autoencoder, out=tmp_path, arms=["latent v"], max_seconds=1e-6, mixed_precision="bf16", log=print
    )
    arm = capped["arms"]["latent v"]
    assert arm["capped"] and arm["steps"] == 1 and arm["mixed_precision"] == "bf16"  # one step, then out of time
    text = lc.latent_comparison_markdown(capped)
    assert "| latent v | 1 × 8 (capped by time: less compute) | bf16 autocast |" in text
    assert "| pixel ε | " in text and "| fp32 |" in text
    with pytest.raises(ValueError, match="unknown arm"):
        lc.run_latent_comparison(TINY, autoencoder, out=tmp_path, arms=["latent x"])
    with pytest.raises(ValueError, match="another profile .*budget_gflops"):
        lc.run_latent_comparison(dataclasses.replace(TINY, budget_gflops=1.0), autoencoder, out=tmp_path, arms=[])


def test_cli_refuses_a_missing_autoencoder_checkpoint(tmp_path, capsys):
    code = cli.main(
        [
            "experiment",
            "latent-comparison",
            "--profile",
            "ci",
            "--out",
            str(tmp_path / "o"),
            "--autoencoder",
            str(tmp_path / "missing.pt"),
        ]
    )
    assert code == 2 and "missing.pt does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_solver_comparison_counts_dpm_steps_against_ddim(comparison):
    out, results = comparison
    lc.write_latent_comparison_results(results, out)
    torch.manual_seed(0)
    autoencoder = LatentAutoencoder(image_size=32, channels=(8, 8), latent_channels=4, norm_num_groups=8)
    autoencoder.fit_scale_factor(torch.rand(8, 1, 32, 32) * 2 - 1)
    solvers = lc.solver_comparison(
        out, autoencoder, arm="latent ε", steps=(2, 3), reference_steps=4, log=lambda line: None
    )
    assert set(solvers["kid"]) == {"DPM-Solver++", "DDIM"} and set(solvers["kid"]["DDIM"]) == {2, 3}
    enough = [s for s in (2, 3) if solvers["kid"]["DPM-Solver++"][s] <= solvers["reference_kid"]]
    assert solvers["steps_to_match"] == (min(enough) if enough else None)
    with pytest.raises(ValueError, match="must be a latent ε or v arm"):
        lc.solver_comparison(out, autoencoder, arm="latent rectified flow")
