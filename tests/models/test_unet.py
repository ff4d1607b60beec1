"""Tests for meddiff_lab/models/unet.py: shapes and parameters against MONAI and diffusers, 3D, conditioning."""

import pytest
import torch
from diffusers import UNet2DModel
from monai.networks.nets import DiffusionModelUNet

from meddiff_lab.models import UNet

CHANNELS = (32, 64, 128)
ATTENTION = (False, False, True)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _monai(**kwargs) -> DiffusionModelUNet:
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=CHANNELS,
        attention_levels=ATTENTION,
        num_res_blocks=1,
        num_head_channels=32,
        **kwargs,
    )


def _randomised(model: UNet) -> UNet:
    """Give the zero-initialised layers (residual branches, output) random weights, so every input matters."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.abs().sum() == 0:
                parameter.normal_(std=0.05)
    return model


def _diffusers() -> UNet2DModel:
    return UNet2DModel(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        block_out_channels=CHANNELS,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
    )


def test_parameter_count_within_ten_percent_of_monai():
    ours, monai = _count(UNet(channels=CHANNELS, attention_levels=ATTENTION)), _count(_monai())
    assert abs(ours - monai) / monai < 0.10, (ours, monai)


def test_output_shape_matches_monai_and_diffusers():
    torch.manual_seed(0)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([10, 500])
    ours = UNet()(x, t)
    with torch.no_grad():
        assert ours.shape == _monai()(x, t).shape == _diffusers()(x, t).sample.shape == x.shape
    assert ours.dtype == x.dtype


@pytest.mark.parametrize("timesteps", [7, torch.tensor(7), torch.tensor([7, 7]), 7.5])
def test_timesteps_may_be_int_scalar_or_batch(timesteps):
    torch.manual_seed(0)
    model = _randomised(UNet(channels=(32, 32), attention_levels=(False, True)))
    x = torch.randn(2, 1, 8, 8)
    reference = model(x, torch.tensor([7.5, 7.5]) if isinstance(timesteps, float) else torch.tensor([7, 7]))
    torch.testing.assert_close(model(x, timesteps), reference)


def test_output_depends_on_timestep_after_one_training_step():
    torch.manual_seed(0)
    model = UNet(channels=(32, 32), attention_levels=(False, True))
    x, noise = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(model(x, 3), torch.zeros_like(x))  # output conv starts at zero
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        (model(x, torch.tensor([3, 900, 3, 900])) - noise).square().mean().backward()
        optimizer.step()
    assert not torch.allclose(model(x, 3), model(x, 900))


def test_3d_unet_forward_and_backward_on_a_small_volume():
    torch.manual_seed(0)
    model = UNet(spatial_dims=3, channels=(32, 32, 64), attention_levels=(False, False, True))
    volume = torch.randn(1, 1, 16, 16, 16)
    out = model(volume, torch.tensor([100]))
    assert out.shape == volume.shape
    (out - torch.randn_like(out)).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.conv_out.weight.grad.abs().sum() > 0


def test_class_conditioning_and_null_class():
    torch.manual_seed(0)
    model = _randomised(UNet(channels=(32, 32), attention_levels=(False, True), num_classes=3))
    x = torch.randn(2, 1, 8, 8)
    assert model.null_class == 3
    a, b = model(x, 5, class_labels=torch.tensor([0, 0])), model(x, 5, class_labels=torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    torch.testing.assert_close(model(x, 5), model(x, 5, class_labels=torch.tensor([3, 3])))  # None = null
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        model(x, 5, class_labels=torch.tensor([0, 4]))


def test_metadata_conditioning_and_mask_channels():
    torch.manual_seed(0)
    model = _randomised(UNet(in_channels=2, channels=(32, 32), attention_levels=(False, False), cond_dim=4))
    x = torch.randn(2, 2, 8, 8)
    with_cond = model(x, 5, cond=torch.randn(2, 4))
    assert with_cond.shape == (2, 1, 8, 8)
    assert not torch.allclose(with_cond, model(x, 5))


def test_errors_name_the_input():
    model = UNet()
    with pytest.raises(ValueError, match="in_channels"):
        model(torch.randn(1, 3, 32, 32), 1)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 1, 30, 30), 1)
    with pytest.raises(ValueError, match="num_classes=None"):
        model(torch.randn(1, 1, 32, 32), 1, class_labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="timesteps"):
        model(torch.randn(2, 1, 32, 32), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="norm_num_groups"):
        UNet(channels=(24, 48, 96))
    with pytest.raises(ValueError, match="attention_levels"):
        UNet(channels=(32, 64), attention_levels=(False, False, True))


def test_channels_last_changes_speed_not_numbers():
    torch.manual_seed(0)
    fast = _randomised(UNet(channels=(32, 64), attention_levels=(False, True)))
    plain = UNet(channels=(32, 64), attention_levels=(False, True), channels_last=False)
    plain.load_state_dict(fast.state_dict())
    assert fast.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.conv_in.weight.is_contiguous()
    x = torch.randn(2, 1, 16, 16)
    out = fast(x, torch.tensor([4, 400]))
    assert out.is_contiguous()
    torch.testing.assert_close(out, plain(x, torch.tensor([4, 400])), rtol=1e-4, atol=1e-4)
    volume_model = UNet(spatial_dims=3, channels=(32, 32), attention_levels=(False, True))
    assert volume_model.memory_format == torch.contiguous_format  # channels-last 3D was slower here


def test_additional_residuals_reach_the_decoder_like_monais_controlnet_interface():
    torch.manual_seed(0)
    model = UNet(channels=(8, 16), attention_levels=(False, True), num_head_channels=8, norm_num_groups=4)
    with torch.no_grad():
        model.conv_out.weight.normal_(std=0.1)  # zero-initialised: the output would ignore everything
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 500])
    h, skips = model.encode(model.conv_in(x), model.embed(t, 2))
    zeros = [torch.zeros_like(s) for s in skips]
    plain = model(x, t)
    torch.testing.assert_close(
        model(x, t, down_block_additional_residuals=zeros, mid_block_additional_residual=torch.zeros_like(h)), plain
    )
    nudged = [z.clone() for z in zeros]
    nudged[0] += 1.0  # the first skip feeds the last decoder block
    assert not torch.allclose(model(x, t, down_block_additional_residuals=nudged), plain)
    assert not torch.allclose(model(x, t, mid_block_additional_residual=torch.ones_like(h)), plain)
    with pytest.raises(ValueError, match="down_block_additional_residuals: expected"):
        model(x, t, down_block_additional_residuals=zeros[:-1])


def test_unet_kwargs_turns_a_config_model_section_into_unet_arguments():
    import json

    from meddiff_lab.models.unet import unet_kwargs

    section = json.loads(
        json.dumps(
            {"channels": (8, 16), "attention_levels": (False, True), "num_head_channels": 8, "norm_num_groups": 4}
        )
    )
    kwargs = unet_kwargs(section)
    assert kwargs == {
        "channels": (8, 16),
        "attention_levels": (False, True),
        "num_head_channels": 8,
        "norm_num_groups": 4,
    }
    assert section["channels"] == [8, 16]  # the config is left as it was
    assert UNet(**kwargs).channels == (8, 16)


def test_from_config_builds_from_yaml_lists_and_checks_the_image_size():
    section = {
        "channels": [8, 16, 32],
        "attention_levels": [False, False, True],
        "num_head_channels": 8,
        "norm_num_groups": 8,
    }
    model = UNet.from_config(section, image_size=32)
    assert model.channels == (8, 16, 32) and model.config["attention_levels"] == (False, False, True)
    assert UNet.from_config(section).channels == (8, 16, 32)
    with pytest.raises(ValueError, match="image_size 30 must be a multiple of 4"):
        UNet.from_config(section, image_size=30)
