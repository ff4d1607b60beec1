"""Tests for meddiff_lab/runtime.py: device choice, seeding, profiles, the environment check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meddiff_lab import runtime


def test_profiles_exist_and_grow_from_ci_to_full():
    ci, classroom, full = (runtime.get_profile(n) for n in ("ci", "classroom", "full"))
    assert set(ci.sizes) == set(classroom.sizes) == set(full.sizes), "every profile must define the same sizes"
    for key in ("image_size", "num_images", "train_steps", "sampling_steps", "eval_images"):
        assert ci[key] <= classroom[key] <= full[key], key
    assert classroom.threads == 1, "the classroom profile must fit Binder's single core"


def test_profile_attribute_and_item_access_agree():
    prof = runtime.get_profile("ci")
    assert prof.image_size == prof["image_size"] == prof.as_dict()["image_size"]
    with pytest.raises(AttributeError, match="no size 'not_a_size'"):
        prof.not_a_size  # noqa: B018 (the attribute access is what raises)


def test_unknown_profile_names_the_input_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown profile 'gpu'.*ci, classroom, full"):
        runtime.get_profile("gpu")


def test_environment_variable_sets_default_profile(monkeypatch):
    monkeypatch.setenv("MEDDIFF_PROFILE", "full")
    assert runtime.get_profile().name == "full"
    monkeypatch.delenv("MEDDIFF_PROFILE")
    assert runtime.get_profile().name == "classroom"


def test_seed_everything_repeats_all_generators():
    runtime.seed_everything(123)
    first = (torch.rand(3), np.random.rand(3))
    runtime.seed_everything(123)
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)


def test_get_device_honours_request_and_refuses_missing_cuda(monkeypatch):
    monkeypatch.setenv("MEDDIFF_DEVICE", "cpu")
    assert runtime.get_device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.get_device("cuda")


def test_setup_applies_profile_threads():
    before = torch.get_num_threads()
    try:
        prof = runtime.setup("classroom", seed=0)
        assert torch.get_num_threads() == prof.threads == 1
    finally:
        torch.set_num_threads(before)


def test_environment_check_reports_packages_and_datasets(tmp_path):
    rows = {r["item"]: r for r in runtime.environment_check(tmp_path)}
    assert rows["torch"]["status"] == "ok" and rows["torch"]["detail"] == torch.__version__
    assert rows["dataset: synthetic"]["status"] == "missing" and "make data" in rows["dataset: synthetic"]["todo"]
    (tmp_path / "synthetic_cxr").mkdir()
    (tmp_path / "synthetic_cxr" / "Data_Entry_2017.csv").write_text("Image Index\n")
    rows = {r["item"]: r for r in runtime.environment_check(tmp_path)}
    assert rows["dataset: synthetic"]["status"] == "ok"


def test_hardware_description_names_the_threads_and_torch():
    line = runtime.hardware_description(threads=3)
    assert f"torch {torch.__version__}" in line and "\n" not in line
    if not torch.cuda.is_available():
        assert "3 thread(s) of" in line
    from meddiff_lab.training.trainer import hardware_description

    assert hardware_description is runtime.hardware_description


def test_profile_sizes_are_typed_and_every_field_says_what_it_sizes():
    import dataclasses
    import inspect

    fields = [f.name for f in dataclasses.fields(runtime.ProfileSizes)]
    source = inspect.getsource(runtime.ProfileSizes)
    for name in fields:
        line = next(line for line in source.splitlines() if line.strip().startswith(f"{name}:"))
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, f"{name} needs a comment"
    ci = runtime.get_profile("ci")
    assert isinstance(ci.sizes, runtime.ProfileSizes) and list(ci.sizes) == fields
    assert ci.sizes.image_size == ci.image_size == ci["image_size"] == ci.sizes["image_size"]
    with pytest.raises(TypeError, match="profile size ddim_step_sweep"):
        dataclasses.replace(ci.sizes, ddim_step_sweep=[5, 10])  # a list where a tuple of ints is declared
    with pytest.raises(TypeError, match="profile size image_size"):
        dataclasses.replace(ci.sizes, image_size=32.0)
    assert dataclasses.replace(ci.sizes, ldm_ae_seconds=None).ldm_ae_seconds is None
    with pytest.raises(KeyError):
        ci.sizes["nope"]
    assert "image_size" in dir(ci)
