"""Tests of meddiff_lab/training/schema.py and the configs checked with it (TrainConfig, EncoderConfig):
every bad value is refused with a message naming the file and the key; good values are coerced."""

from __future__ import annotations

import pytest

from meddiff_lab.training.encoder import EncoderConfig
from meddiff_lab.training.schema import ConfigError, Field, check_fields, read_yaml_mapping
from meddiff_lab.training.trainer import TrainConfig

# key, bad value, what the message must say. Each of these once passed silently (a wrong run, exit 0)
# or ended in a traceback that did not name the key.
BAD_TRAINING_VALUES = [
    ("max_grad_norm", -1, "max_grad_norm: expected a number > 0 or null, got -1"),  # flipped the gradients
    ("max_grad_norm", 0, "max_grad_norm: expected a number > 0"),
    ("min_lr_ratio", -2, "min_lr_ratio: expected a number in [0, 1], got -2"),  # negative learning rate
    ("min_lr_ratio", 1.5, "min_lr_ratio: expected a number in [0, 1]"),
    ("max_steps", 2.7, "max_steps: expected an integer >= 1, got 2.7"),  # ran 3 steps, NaN loss
    ("max_steps", 0, "max_steps: expected an integer >= 1"),
    ("max_steps", True, "max_steps: expected an integer"),
    ("log_every", 0, "log_every: expected an integer >= 1, got 0"),  # ZeroDivisionError
    ("threads", 0, "threads: expected an integer >= 1 or null, got 0"),
    ("threads", -2, "threads: expected an integer >= 1 or null"),
    ("batch_size", "16x", "batch_size: expected an integer >= 1, got '16x'"),
    ("batch_size", 8.5, "batch_size: expected an integer >= 1"),
    ("seed", "abc", "seed: expected an integer >= 0, got 'abc'"),  # "invalid literal for int()"
    ("learning_rate", "fast", "learning_rate: expected a number in (0, 1], got 'fast'"),  # "'<=' not supported"
    ("learning_rate", float("nan"), "learning_rate: expected a number"),
    ("learning_rate", 0, "learning_rate: expected a number in (0, 1]"),
    ("ema_decay", 1.0, "ema_decay: expected a number in [0, 1)"),
    ("warmup_steps", -5, "warmup_steps: expected an integer >= 0"),
    ("sample_every", -1, "sample_every: expected an integer >= 0"),
    ("checkpoint_every", 1.5, "checkpoint_every: expected an integer >= 0"),
    ("num_samples", 0, "num_samples: expected an integer >= 1"),
    ("sample_steps", 0, "sample_steps: expected an integer >= 1"),
    ("gradient_accumulation_steps", 0, "gradient_accumulation_steps: expected an integer >= 1"),
    ("image_size", 4, "image_size: expected an integer >= 8"),
    ("num_images", -1, "num_images: expected an integer >= 1"),
    ("num_train_timesteps", 1, "num_train_timesteps: expected an integer >= 2"),
    ("beta_start", 0, "beta_start: expected a number in (0, 1)"),
    ("beta_end", 2, "beta_end: expected a number in (0, 1)"),
    ("ssim_weight", 1.5, "ssim_weight: expected a number in [0, 1]"),
    ("min_snr_gamma", -5, "min_snr_gamma: expected a number > 0 or null"),
    ("weight_decay", -0.1, "weight_decay: expected a number >= 0"),
    ("adam_betas", [0.9], "adam_betas: expected a list of 2 numbers"),
    ("adam_betas", [0.9, 1.5], "adam_betas: expected a list of 2 numbers"),
    ("label_dropout", 1, "label_dropout: expected a number in [0, 1)"),
    ("balance_classes", "yes", "balance_classes: expected true or false"),
    ("prediction_type", "noise", "prediction_type: expected one of 'epsilon', 'sample', 'v_prediction'"),
    ("loss", "l1", "loss: expected one of 'mse', 'hybrid'"),
    ("mixed_precision", "fp8", "mixed_precision: expected one of"),
    ("schedule", "quadratic", "schedule: expected one of 'linear', 'scaled_linear', 'cosine', 'sigmoid'"),
    ("data_source", "imagenet", "data_source: expected one of 'synthetic'"),
    ("data_root", 5, "data_root: expected a path (string) or null"),
    ("model", [16, 32], "model: expected a mapping of keys"),
]


@pytest.mark.parametrize(
    "key, value, message", BAD_TRAINING_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_TRAINING_VALUES]
)
def test_every_bad_training_value_is_refused_naming_file_and_key(tmp_path, key, value, message):
    import yaml

    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        TrainConfig.from_dict({key: value})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({key: value}))
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_yaml(path)
    assert str(path) in str(caught.value) and key in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_model_section_is_checked_against_the_unet():
    with pytest.raises(
        ValueError, match=r"model: unknown UNet keyword argument\(s\) \['chanels'\]; allowed: .*channels"
    ):
        TrainConfig.from_dict({"model": {"chanels": [16, 32]}})
    with pytest.raises(
        ValueError, match="model: these UNet keyword arguments do not build a model: .*attention_levels"
    ):
        TrainConfig.from_dict({"model": {"channels": [16, 32]}})  # the default attention_levels has 3 entries
    with pytest.raises(ValueError, match="model: .*multiple of"):
        TrainConfig.from_dict(
            {
                "model": {
                    "channels": [16, 33],
                    "attention_levels": [False, True],
                    "norm_num_groups": 8,
                    "num_head_channels": 8,
                }
            }
        )


def test_image_size_must_survive_the_unets_downsampling():
    from meddiff_lab.training.trainer import build_model

    config = TrainConfig.from_dict(
        {
            "image_size": 18,
            "model": {
                "channels": [8, 16, 16],
                "attention_levels": [False, False, False],
                "norm_num_groups": 8,
                "num_head_channels": 8,
            },
        }
    )
    with pytest.raises(ValueError, match="image_size 18 must be a multiple of 4"):
        build_model(config)


def test_beta_start_must_be_below_beta_end():
    with pytest.raises(ValueError, match="beta_start .* must be smaller than beta_end"):
        TrainConfig.from_dict({"beta_start": 0.02, "beta_end": 0.0001})
    TrainConfig.from_dict({"schedule": "cosine", "beta_start": 0.02, "beta_end": 0.0001})  # cosine ignores them


def test_yaml_spellings_of_good_values_are_coerced():
    config = TrainConfig.from_dict(
        {
            "learning_rate": "1e-4",
            "max_steps": 100.0,
            "max_grad_norm": None,
            "adam_betas": [0.9, "0.99"],
            "threads": None,
            "data_root": None,
        }
    )
    assert config.learning_rate == 1e-4 and config.max_steps == 100 and isinstance(config.max_steps, int)
    assert config.adam_betas == (0.9, 0.99) and config.max_grad_norm is None
    assert config.replace(max_steps=3).max_steps == 3
    with pytest.raises(ValueError, match="max_steps"):
        config.replace(max_steps=-3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty; expected a mapping of keys"),  # once started the full default job
        ("# only a comment\n", "is empty"),
        ("max_steps: [1, 2\n", "is not valid YAML at line 2"),
        ("- 1\n- 2\n", "must hold a mapping of keys, got a list"),
        ("max_stepz: 3\n", r"unknown training config key\(s\) \['max_stepz'\]; known keys: .*'max_steps'"),
        ("data: 3\n", r"unknown training config key\(s\) \['data'\]"),
    ],
)
def test_config_files_that_are_empty_malformed_or_unknown_are_refused(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        TrainConfig.from_yaml(path)
    assert str(path) in str(caught.value)


def test_config_file_that_is_not_text_or_a_folder_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"max_steps: \xff\xfe\n")
    with pytest.raises(ValueError, match="run.yaml is not UTF-8 text"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match="is a folder; expected a YAML file"):
        TrainConfig.from_yaml(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.yaml does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


def test_shipped_configs_still_parse():
    for name in ("smoke_test_16px", "student_phantom32", "pretrained_phantom64"):
        TrainConfig.from_yaml(f"configs/{name}.yaml")
    EncoderConfig.from_yaml("configs/phantom_encoder.yaml")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"steps": -1}, "steps: expected an integer >= 1, got -1"),  # wrote an untrained encoder
        ({"batch_size": 1}, "batch_size: expected an integer >= 2"),
        ({"temperature": 0}, "temperature: expected a number > 0"),
        ({"threads": 0}, "threads: expected an integer >= 1 or null"),
        ({"channels": [32, -1]}, "channels: expected a list of positive integers"),
        ({"loss_weights": {"labelz": 1.0}}, r"loss_weights: unknown key\(s\) \['labelz'\]"),
        ({"loss_weights": {"labels": -1}}, "loss_weights.labels: expected a number >= 0"),
    ],
)
def test_encoder_config_values_are_checked(tmp_path, changes, message):
    import yaml

    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_mapping(changes)
    path = tmp_path / "encoder.yaml"
    path.write_text(yaml.safe_dump(changes))
    with pytest.raises(ValueError, match=f"encoder config {path}"):
        EncoderConfig.from_yaml(path)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        EncoderConfig.from_yaml(tmp_path / "empty.yaml")


def test_field_rules_describe_and_coerce():
    assert Field("int", low=1).describe() == "an integer >= 1"
    assert Field("float", low=0.0, high=1.0, high_open=True, optional=True).describe() == "a number in [0, 1) or null"
    assert (
        check_fields(
            {"a": "3", "b": None, "other": object}, {"a": Field("int", low=0), "b": Field("float", optional=True)}
        )["a"]
        == 3
    )
    with pytest.raises(ConfigError, match="a: expected an integer >= 0, got -1; b: expected a finite number, got None"):
        check_fields({"a": -1, "b": None}, {"a": Field("int", low=0), "b": Field("float")})
    assert issubclass(ConfigError, ValueError)


def test_read_yaml_mapping_names_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n")
    assert read_yaml_mapping(path, "some config") == {"a": 1}
    path.write_text("a: [\n")
    with pytest.raises(ValueError, match=f"some config {path} is not valid YAML"):
        read_yaml_mapping(path, "some config")


@pytest.mark.parametrize(
    "cls, from_mapping, what, key",
    [
        (TrainConfig, TrainConfig.from_dict, "training config", "max_steps"),
        (EncoderConfig, EncoderConfig.from_mapping, "encoder config", "steps"),
    ],
)
def test_as_config_takes_the_config_a_mapping_or_a_yaml_path(tmp_path, cls, from_mapping, what, key):
    from meddiff_lab.training.schema import as_config

    config = cls(**{key: 7})
    assert as_config(config, cls, from_mapping, what) is config
    assert getattr(as_config({key: 7}, cls, from_mapping, what), key) == 7
    path = tmp_path / "c.yaml"
    path.write_text(f"{key}: 7\n", encoding="utf-8")
    for given in (path, str(path)):
        assert getattr(as_config(given, cls, from_mapping, what), key) == 7
    assert getattr(cls.coerce(path), key) == 7 and cls.coerce(config) is config
    path.write_text(f"{key}: -1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{what} {path}: {key}"):
        cls.coerce(path)
    with pytest.raises(TypeError, match=f"{what}: expected a {cls.__name__}, a mapping or the path"):
        cls.coerce(3)
