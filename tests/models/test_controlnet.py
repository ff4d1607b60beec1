"""Tests for meddiff_lab/models/controlnet.py: mask conditioning by concatenation and by a ControlNet branch."""

import pytest
import torch

from meddiff_lab.diffusion import DDIMScheduler, sample
from meddiff_lab.models import UNet
from meddiff_lab.models.controlnet import (
    BoundCondition,
    ControlledUNet,
    ControlNet,
    MaskConcat,
    skip_channels,
    unet_forward_with_residuals,
)

SMALL = dict(channels=(8, 16), attention_levels=(False, True), num_head_channels=8, norm_num_groups=4)


def _randomised(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give zero-initialised layers random weights, so every input (and every branch) matters."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.abs().sum() == 0:
                parameter.normal_(std=0.05)
    return model


def _inputs(batch: int = 2, size: int = 8):
    torch.manual_seed(0)
    x = torch.randn(batch, 1, size, size)
    mask = torch.randn(batch, 1, size, size).sign()
    return x, torch.tensor([3, 700])[:batch], mask


def test_forward_with_no_residuals_is_the_unets_own_forward():
    base = _randomised(UNet(num_classes=2, cond_dim=3, **SMALL))
    x, t, _ = _inputs()
    labels, cond = torch.tensor([0, 2]), torch.randn(2, 3)
    torch.testing.assert_close(unet_forward_with_residuals(base, x, t, labels, cond), base(x, t, labels, cond))


def test_a_new_controlnet_leaves_the_base_model_exactly_unchanged():
    base = _randomised(UNet(**SMALL))
    controlled = ControlledUNet(base)
    x, t, mask = _inputs()
    torch.testing.assert_close(controlled(x, t, mask=mask), base(x, t), rtol=0, atol=0)


def test_residual_shapes_match_the_skip_connections():
    base = UNet(
        channels=(8, 16, 16),
        attention_levels=(False, False, True),
        num_head_channels=8,
        norm_num_groups=4,
        num_res_blocks=(1, 2, 1),
    )
    x, t, mask = _inputs(size=16)
    skips, middle = ControlNet(base)(x, t, mask)
    assert [s.shape[1] for s in skips] == skip_channels(base)
    assert len(skips) == 1 + 2 + 3 + 1
    assert middle.shape == (2, 16, 4, 4)
    assert all(float(s.detach().abs().max()) == 0.0 for s in skips)  # zero convolutions: no effect yet


def test_zero_convolutions_learn_first_then_the_mask_encoder():
    """The ControlNet mechanism: at step 0 only the zero convs get gradients; after one step, the rest too."""
    base = _randomised(UNet(**SMALL))
    controlled = ControlledUNet(base)
    x, t, mask = _inputs()
    optimizer = torch.optim.SGD([p for p in controlled.parameters() if p.requires_grad], lr=0.1)
    controlled(x, t, mask=mask).pow(2).mean().backward()
    zero_conv_grad = sum(float(c.weight.grad.abs().sum()) for c in controlled.controlnet.skip_convs)
    hint_grad = controlled.controlnet.hint_encoder[0].weight.grad
    assert zero_conv_grad > 0
    assert hint_grad is None or float(hint_grad.abs().sum()) == 0.0
    optimizer.step()
    optimizer.zero_grad()
    controlled(x, t, mask=mask).pow(2).mean().backward()
    assert float(controlled.controlnet.skip_convs[0].weight.grad.abs().sum()) > 0
    assert float(controlled.controlnet.hint_encoder[-1].weight.grad.abs().sum()) > 0


def test_only_the_branch_trains_and_the_base_stays_frozen():
    base = _randomised(UNet(**SMALL))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    controlled = _randomised(ControlledUNet(base), seed=2)
    assert not any(p.requires_grad for p in base.parameters())
    trainable = [p for p in controlled.parameters() if p.requires_grad]
    assert len(trainable) == len(list(controlled.controlnet.parameters()))
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    x, t, mask = _inputs()
    for _ in range(2):
        optimizer.zero_grad()
        controlled(x, t, mask=mask).pow(2).mean().backward()
        optimizer.step()
    for key, value in base.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    # once the branch has weights, the output depends on the mask, and conditioning_scale=0 switches it off
    assert not torch.allclose(controlled(x, t, mask=mask), controlled(x, t, mask=-mask))
    controlled.conditioning_scale = 0.0
    torch.testing.assert_close(controlled(x, t, mask=mask), base(x, t))


def test_mask_concat_is_concatenation_on_channels():
    unet = _randomised(UNet(in_channels=2, **SMALL))
    x, t, mask = _inputs()
    torch.testing.assert_close(MaskConcat(unet)(x, t, mask=mask), unet(torch.cat([x, mask], 1), t))


def test_errors_name_the_input():
    x, t, mask = _inputs()
    with pytest.raises(ValueError, match="in_channels"):
        MaskConcat(UNet(in_channels=1, **SMALL))
    with pytest.raises(ValueError, match="needs mask"):
        MaskConcat(UNet(in_channels=2, **SMALL))(x, t)
    with pytest.raises(ValueError, match="mask must be"):
        ControlledUNet(UNet(**SMALL))(x, t, mask=mask[:, :, :4])
    with pytest.raises(TypeError, match="UNet"):
        ControlNet(torch.nn.Conv2d(1, 1, 3))


@pytest.mark.parametrize("wrapper", ["concat", "controlnet"])
def test_bound_condition_samples_with_classifier_free_guidance(wrapper):
    """sample() doubles the batch for guidance; the bound masks must follow (and the null class be found)."""
    if wrapper == "concat":
        model = MaskConcat(_randomised(UNet(in_channels=2, num_classes=2, **SMALL)))
    else:
        model = _randomised(ControlledUNet(_randomised(UNet(num_classes=2, **SMALL))), seed=3)
    _, _, mask = _inputs(batch=3)
    bound = BoundCondition(model, mask=mask)
    assert bound.null_class == 2
    scheduler = DDIMScheduler()
    out = sample(
        bound,
        scheduler,
        (3, 1, 8, 8),
        class_labels=torch.tensor([0, 1, 1]),
        guidance_scale=2.0,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()
    other = sample(
        BoundCondition(model, mask=-mask),
        scheduler,
        (3, 1, 8, 8),
        class_labels=torch.tensor([0, 1, 1]),
        guidance_scale=2.0,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert not torch.allclose(out, other)  # the mask reaches the model
