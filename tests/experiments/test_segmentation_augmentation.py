"""meddiff_lab/experiments/segmentation_augmentation.py: notebook 07's grid, run end to end on tiny sizes."""

import dataclasses
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from meddiff_lab import cli
from meddiff_lab.experiments import segmentation_augmentation as sa
from meddiff_lab.experiments._results import claim_folder
from meddiff_lab.models.pretrained import is_available

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = "phantom64-controlnet-edge"
needs_generator = pytest.mark.skipif(not is_available(GENERATOR), reason=f"{GENERATOR} weights are not shipped here")

# the ci profile cut further: two draws so that every paired difference has an interval
TINY = dataclasses.replace(
    sa.SEG_AUGMENTATION_PROFILES["ci"],
    draws=2,
    segmenter_steps=4,
    batch_size=4,
    sampling_steps=2,
    validation_images=4,
    test_images=4,
    reference_images=8,
    reference_steps=4,
)


# ------------------------------------------------------------------------------------ names, profiles
def test_every_public_name_resolves_from_its_module():
    package = importlib.import_module("meddiff_lab.experiments")
    assert package.__all__ == sorted(package._PUBLIC)
    for name, module in package._PUBLIC.items():
        assert getattr(package, name) is getattr(importlib.import_module(f"meddiff_lab.experiments.{module}"), name)


def test_profiles_hold_the_grids_the_issue_asks_for():
    ci, full = sa.get_seg_augmentation_profile("ci"), sa.get_seg_augmentation_profile("full")
    assert ci.labelled_sizes == (4,) and ci.draws == ci.seeds == ci.synthetic_per_image == 1
    assert full.labelled_sizes == (4, 8, 16, 32) and full.draws >= 3 and full.seeds >= 3
    assert full.segmenter_steps > ci.segmenter_steps and full.runs == 4 * 9 * len(sa.SEG_AUGMENTATION_ARMS)


def test_an_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="'huge'.*ci, classroom, notebook-full, full"):
        sa.get_seg_augmentation_profile("huge")


def test_a_profile_too_small_for_its_draws_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="labelled_pool_images must be >= 128"):
        dataclasses.replace(sa.SEG_AUGMENTATION_PROFILES["full"], labelled_pool_images=100)
    with pytest.raises(ValueError, match="segmenter_steps must be >= 2"):
        dataclasses.replace(TINY, segmenter_steps=1)


# ------------------------------------------------------------------------------------------ statistics
def test_arm_difference_pairs_by_draw_and_seed():
    results = {
        "runs": [
            {"n": 4, "arm": "a", "draw": 0, "seed": 0, "dice": 0.9},
            {"n": 4, "arm": "b", "draw": 0, "seed": 0, "dice": 0.7},
            {"n": 4, "arm": "a", "draw": 1, "seed": 0, "dice": 0.8},
            {"n": 4, "arm": "b", "draw": 1, "seed": 0, "dice": 0.7},
            {"n": 4, "arm": "a", "draw": 2, "seed": 0, "dice": 0.5},  # no "b" partner: left out
        ]
    }
    row = sa.arm_difference(results, 4, "a", "b")
    assert row["count"] == 2 and row["mean"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="no \\(draw, seed\\) has both"):
        sa.arm_difference(results, 8, "a", "b")


# ------------------------------------------------------------------------------------ data, generator
def test_labelled_draws_are_nested_and_differ_between_draws():
    first, second = sa.labelled_draw(64, 16, draw=0), sa.labelled_draw(64, 16, draw=1)
    assert len(set(first)) == 16 and not np.array_equal(first, second)
    assert np.array_equal(sa.labelled_draw(64, 8, draw=0), first[:8])
    with pytest.raises(ValueError, match="pool of at least 65"):
        sa.labelled_draw(64, 65, draw=0)


def test_mask_boundaries_outline_each_structure():
    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 0, 2:7, 2:7] = 1  # a 5 x 5 square: 16 boundary pixels
    masks[0, 1, 9:12, 9:12] = 1  # a 3 x 3 square: 8
    assert sa.mask_boundaries(masks).sum() == 16 + 8


def test_the_control_holds_the_mask_boundaries_and_is_plus_minus_one():
    split = sa._phantom_split(3, 64, seed=5)
    control = sa.edge_and_mask_control(split.images, split.masks)
    assert control.shape == (3, 1, 64, 64) and set(control.unique().tolist()) == {-1.0, 1.0}
    assert bool((control[:, 0] > 0)[torch.from_numpy(sa.mask_boundaries(split.masks))].all())


def test_warp_moves_image_and_mask_together():
    split = sa._phantom_split(2, 64, seed=5)
    heart_as_image = split.masks[:, 2:3] * 2 - 1  # an image whose content is the heart mask
    images, masks, source = sa.warp_pairs(heart_as_image, split.masks, per_image=3, seed=0)
    assert images.shape == (6, 1, 64, 64) and masks.shape == (6, 3, 64, 64) and source.tolist() == [0, 0, 0, 1, 1, 1]
    assert not torch.equal(masks, split.masks[source])  # warped
    agreement = sa.mean_dice((images[:, 0:1] > 0).float(), masks[:, 2:3])
    assert agreement > 0.95


def test_the_unlabelled_pool_is_the_generators_seed_0_phantoms_without_masks():
    data = sa.make_splits(dataclasses.replace(TINY, unlabelled_images=4))
    assert data.unlabelled.masks is None
    from meddiff_lab.data import generate_phantoms

    expected = torch.from_numpy(generate_phantoms(4, 64, seed=0, masks=()).images)[:, None] * 2 - 1
    assert torch.equal(data.unlabelled.images, expected)
    assert not torch.equal(data.test.images[:4], data.labelled_pool.images[:4])


@needs_generator
def test_synthetic_masks_are_the_warped_masks_of_the_control():
    from meddiff_lab.models import load_pretrained

    split = sa._phantom_split(2, 64, seed=1)
    pairs = sa.generate_synthetic_pairs(
        load_pretrained(GENERATOR), split.images, split.masks, per_image=2, sampling_steps=2, seed=0
    )
    assert pairs.images.shape == (4, 1, 64, 64) and pairs.images.min() >= -1 and pairs.images.max() <= 1
    assert torch.equal(pairs.source_masks, split.masks[pairs.source_index])
    boundary = torch.from_numpy(sa.mask_boundaries(pairs.masks))
    assert bool((pairs.controls[:, 0] > 0)[boundary].all())


@needs_generator
def test_unwarped_pairs_keep_the_labelled_images_edges_and_masks():
    from meddiff_lab.models import load_pretrained

    split = sa._phantom_split(2, 64, seed=1)
    pairs = sa.generate_synthetic_pairs(
        load_pretrained(GENERATOR), split.images, split.masks, per_image=2, sampling_steps=2, seed=0, warp=False
    )
    assert torch.equal(pairs.source_index, torch.tensor([0, 0, 1, 1]))
    assert torch.equal(pairs.masks, pairs.source_masks) and torch.equal(
        pairs.warped_sources, split.images[[0, 0, 1, 1]]
    )
    assert torch.equal(pairs.controls, sa.edge_and_mask_control(split.images, split.masks)[[0, 0, 1, 1]])


def test_the_fidelity_ceiling_is_the_reference_segmenter_on_real_images():
    class Perfect(torch.nn.Module):  # answers each image's own mask, stored in its pixels
        def forward(self, x):
            return (x[:, :1] > 0).float().repeat(1, 2, 1, 1) * 20 - 10

    masks = torch.zeros(2, 2, 8, 8)
    masks[:, :, 2:6, 2:6] = 1
    images = masks[:, :1] * 2 - 1
    assert sa.fidelity_ceiling(Perfect(), images, masks) == pytest.approx(1.0)
    assert sa.fidelity_ceiling(Perfect(), images, torch.roll(masks, 2, dims=-1)) < 0.6


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """The CLI's ci profile, cut to TINY, run once for the tests below."""
    if not is_available(GENERATOR):
        pytest.skip(f"{GENERATOR} weights are not shipped here")
    out = tmp_path_factory.mktemp("seg-augmentation")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sa.SEG_AUGMENTATION_PROFILES, "ci", TINY)
        assert cli.main(["experiment", "seg-augmentation", "--profile", "ci", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_arm_runs_for_every_draw_and_seed_with_the_same_steps(ci_run):
    _, results = ci_run
    runs = results["runs"]
    assert len(runs) == TINY.runs
    for draw in range(TINY.draws):
        arms = [r["arm"] for r in runs if r["draw"] == draw]
        assert arms == list(sa.SEG_AUGMENTATION_ARMS)
    assert {r["steps"] for r in runs} == {TINY.segmenter_steps}
    pairs = {r["arm"]: r["training_pairs"] for r in runs if r["draw"] == 0}
    n, k = TINY.labelled_sizes[0], TINY.synthetic_per_image
    assert pairs["labelled only"] == n and pairs["+ synthetic"] == pairs["+ pseudo-labels"] == n * (1 + k)
    assert pairs["more real labels (2n)"] == 2 * n and pairs["more real labels (4n)"] == 4 * n
    for r in runs:
        assert 0 <= r["dice"] <= 1 and 0 <= r["heart_dice"] <= 1 and r["hd95_mm"] >= 0 and 0 <= r["val_dice"] <= 1


@pytest.mark.slow
def test_paired_intervals_contain_their_mean_and_match_the_runs(ci_run):
    _, results = ci_run
    runs, differences = results["runs"], results["differences"]
    assert len(differences) == len(sa.BASELINES) * (len(sa.SEG_AUGMENTATION_ARMS) - 1) * len(sa.METRICS)
    for d in differences:
        assert d["count"] == TINY.draws * TINY.seeds and d["low"] <= d["mean"] <= d["high"]
    score = {(r["arm"], r["draw"]): r["dice"] for r in runs}
    row = next(
        d
        for d in differences
        if d["arm"] == "+ synthetic" and d["baseline"] == "labelled only" and d["metric"] == "dice"
    )
    expected = np.mean([score[("+ synthetic", draw)] - score[("labelled only", draw)] for draw in range(TINY.draws)])
    assert row["mean"] == pytest.approx(expected)


@pytest.mark.slow
def test_synthetic_quality_stands_beside_sensible_floors(ci_run):
    _, results = ci_run
    assert len(results["synthetic"]) == TINY.draws
    for q in results["synthetic"]:
        # the intended mask is a mild warp of its source: closer to it than to another patient's mask
        assert q["masks_other_phantom"] < q["masks_source"] < 1.0
        for key in (
            "fidelity_dice",
            "floor_other_phantom",
            "floor_source_mask",
            "diversity_synthetic",
            "diversity_real",
            "ms_ssim_to_warped_source",
        ):
            assert 0.0 <= q[key] <= 1.0, key
        assert q["diversity_same_source"] is None  # k = 1


@pytest.mark.slow
def test_results_md_shows_every_arm_time_and_hardware(ci_run):
    out, results = ci_run
    text = (out / "results.md").read_text(encoding="utf-8")
    for arm in sa.SEG_AUGMENTATION_ARMS:
        assert f"| {arm} |" in text
    assert results["hardware"] in text and f"Last call: {results['seconds']:.0f} s" in text
    assert "fidelity Dice" in text and "Left out" in text
    assert results["command"].startswith("meddiff-lab experiment seg-augmentation --profile ci")


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_refuses_an_unknown_profile_in_one_line_before_writing(tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["experiment", "seg-augmentation", "--profile", "huge", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown seg-augmentation profile 'huge'; expected one of ci, classroom, notebook-full, full" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_cli_refuses_an_out_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["experiment", "seg-augmentation", "--profile", "ci", "--out", str(blocker)]) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------- resume and workers
def _groups(out):
    return sorted((r["n"], r["draw"], r["seed"]) for r in sa.GroupStore.read(out) if r["kind"] == "group")


@pytest.mark.slow
@needs_generator
def test_a_stopped_grid_resumes_where_it_stopped_and_says_what_is_missing(tmp_path):
    out = tmp_path / "grid"
    first = sa.run_seg_augmentation(TINY, out=out, progress=False, max_seconds=1e-9, log=lambda line: None)
    # the deadline passed before the first group: nothing ran, and the results say so
    assert first["groups_done"] == 0 and not first["complete"] and first["groups_total"] == TINY.draws
    assert "**Incomplete:** 0 of 2" in sa.results_markdown(first)
    second = sa.run_seg_augmentation(TINY, out=out, progress=False, log=lambda line: None)
    assert second["complete"] and _groups(out) == [(4, 0, 0), (4, 1, 0)]
    stored = (out / "parts" / "worker-0.jsonl").read_text(encoding="utf-8")
    third = sa.run_seg_augmentation(TINY, out=out, progress=False, log=lambda line: None)  # all done: trains nothing
    assert (out / "parts" / "worker-0.jsonl").read_text(encoding="utf-8") == stored
    assert third["runs"] == second["runs"] and third["complete"]


@pytest.mark.slow
@needs_generator
def test_two_workers_share_the_cells_and_a_torn_last_line_is_ignored(tmp_path):
    out = tmp_path / "grid"
    results = sa.run_seg_augmentation(TINY, out=out, workers=2, progress=False, log=lambda line: None)
    assert results["complete"] and results["workers"] == 2 and len(results["runs"]) == TINY.runs
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["worker-0.jsonl", "worker-1.jsonl"]
    with open(out / "parts" / "worker-1.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"kind": "group", "n": 4, "dr')  # a worker killed mid-line
    assert _groups(out) == [(4, 0, 0), (4, 1, 0)]


def test_a_folder_of_another_profile_is_refused_naming_what_differs(tmp_path):
    out = tmp_path / "grid"
    claim_folder(out, TINY)
    with pytest.raises(ValueError, match="differs in segmenter_steps"):
        claim_folder(out, dataclasses.replace(TINY, segmenter_steps=5))


def test_more_workers_than_one_need_an_out_folder():
    with pytest.raises(ValueError, match="more than one needs an out folder"):
        sa.run_seg_augmentation(TINY, workers=2)


def test_grid_cells_put_the_smallest_labelled_sets_first():
    full = sa.SEG_AUGMENTATION_PROFILES["full"]
    cells = sa.grid_cells(full)
    assert cells[:3] == [(4, 0), (4, 1), (4, 2)] and len(cells) == 12 and cells[-1] == (32, 2)


# ----------------------------------------------------------------------------------------- extra arms
ARM = "+ unwarped synthetic + classical"


@pytest.fixture
def grid_with_extra_arm(ci_run, tmp_path):
    """A copy of the ci grid whose synthetic rows predate the ceiling, then the extra arm added to it."""
    out = tmp_path / "grid"
    shutil.copytree(ci_run[0], out)
    for part in (out / "parts").glob("*.jsonl"):
        records = [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
        for record in records:
            record.pop("fidelity_ceiling", None)
        part.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sa.SEG_AUGMENTATION_PROFILES, "ci", TINY)
        assert (
            cli.main(["experiment", "seg-augmentation", "--profile", "ci", "--out", str(out), "--extra-arm", ARM]) == 0
        )
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_an_extra_arm_pairs_with_every_grid_group_and_keeps_the_grid(ci_run, grid_with_extra_arm):
    out, results = grid_with_extra_arm
    added = [r for r in results["runs"] if r["arm"] == ARM]
    assert sorted((r["draw"], r["seed"]) for r in added) == [
        (d, s) for d in range(TINY.draws) for s in range(TINY.seeds)
    ]
    assert {r["steps"] for r in added} == {TINY.segmenter_steps}
    assert [r for r in results["runs"] if r["arm"] != ARM] == ci_run[1]["runs"]  # the grid's runs, untouched
    assert results["groups_done"] == ci_run[1]["groups_done"] and results["extra_arms"] == {ARM: sa.EXTRA_ARMS[ARM]}
    for baseline in sa.BASELINES:
        row = sa.arm_difference(results, 4, ARM, baseline)
        assert row["count"] == TINY.draws * TINY.seeds and row["low"] <= row["mean"] <= row["high"]
    assert sa.arms_at(results, 4) == list(sa.TABLE_ARMS)
    text = (out / "results.md").read_text(encoding="utf-8")
    assert f"| 4 | {ARM} |" in text and "| unwarped | 4 |" in text and "--extra-arm" in results["command"]


@pytest.mark.slow
def test_an_extra_arm_measures_its_pairs_and_the_grid_pairs_ceiling(grid_with_extra_arm):
    out, results = grid_with_extra_arm
    warped = [q for q in results["synthetic"] if q["variant"] == "warped"]
    unwarped = [q for q in results["synthetic"] if q["variant"] == "unwarped"]
    assert len(warped) == len(unwarped) == TINY.draws
    for q in unwarped:  # its masks are the source masks, so fidelity and the source-mask floor coincide
        assert q["fidelity_dice"] == pytest.approx(q["floor_source_mask"]) and q["masks_source"] == pytest.approx(1)
    kinds = [json.loads(line)["kind"] for line in (out / "parts" / "worker-extra.jsonl").read_text().splitlines()]
    assert kinds.count("ceiling") == TINY.draws  # the grid's rows lacked the ceiling: measured from the warps
    assert all(0 <= q["fidelity_ceiling"] <= 1 for q in warped + unwarped)


@pytest.mark.slow
def test_a_second_extra_arm_call_trains_nothing(grid_with_extra_arm):
    out, results = grid_with_extra_arm
    stored = (out / "parts" / "worker-extra.jsonl").read_text(encoding="utf-8")
    again = sa.run_extra_arm(TINY, ARM, out, log=lambda line: None)
    assert (out / "parts" / "worker-extra.jsonl").read_text(encoding="utf-8") == stored
    assert again["runs"] == results["runs"]


def test_an_extra_arm_refuses_bad_input_naming_it(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown extra arm 'magic'; expected one of"):
        sa.run_extra_arm(TINY, "magic", tmp_path)
    with pytest.raises(ValueError, match=r"sizes \(8,\) must be among profile 'ci'"):
        sa.run_extra_arm(TINY, ARM, tmp_path, sizes=(8,))
    with pytest.raises(FileNotFoundError, match="holds no grid run"):
        sa.run_extra_arm(TINY, ARM, tmp_path)
    assert cli.main(["experiment", "seg-augmentation", "--profile", "ci", "--out", str(tmp_path), "--sizes", "4"]) == 2
    assert "--sizes only goes with --extra-arm" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ committed grid
def test_the_readme_shows_the_committed_grid_as_committed():
    committed = json.loads((ROOT / "data/experiments/seg-augmentation/results.json").read_text(encoding="utf-8"))
    assert sa.summary_table(committed) in (ROOT / "README.md").read_text(encoding="utf-8")
