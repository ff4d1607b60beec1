"""Tests for meddiff_lab/training/conditional.py: metadata vectors and the conditional training loop."""

import numpy as np
import pytest
import torch

from meddiff_lab.models import UNet
from meddiff_lab.models.controlnet import ControlledUNet, MaskConcat
from meddiff_lab.training.conditional import metadata_to_cond, train_conditional_diffusion

SMALL = dict(channels=(8, 16), attention_levels=(False, True), num_head_channels=8, norm_num_groups=4)


class _Recorder(torch.nn.Module):
    """A stand-in model that records what the loop passes it."""

    null_class = 2

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[dict] = []

    def forward(self, x, t, class_labels=None, cond=None, mask=None):
        self.seen.append({"labels": class_labels, "cond": cond, "mask": mask, "t": t})
        return x * self.weight


def _data(n=40, size=8):
    torch.manual_seed(0)
    images = torch.rand(n, 1, size, size) * 2 - 1
    labels = (torch.arange(n) < n // 5).long()  # 20 % class 1, like cardiomegaly
    return images, labels


def test_metadata_vectors():
    cond = metadata_to_cond([{"age": 70, "sex": "F"}, {"age": 30, "sex": "M"}])
    torch.testing.assert_close(cond, torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 1.0]]))
    torch.testing.assert_close(metadata_to_cond(age=[50], sex=["M"]), torch.tensor([[0.0, -1.0, 1.0]]))
    with pytest.raises(ValueError, match="sex"):
        metadata_to_cond(age=[50], sex=["X"])
    with pytest.raises(ValueError, match="age"):
        metadata_to_cond([{"age": None, "sex": "F"}])


def test_label_dropout_uses_the_null_class_and_cond_dropout_the_zero_vector():
    images, labels = _data()
    cond = torch.ones(len(images), 3)
    model = _Recorder()
    train_conditional_diffusion(
        model, images, steps=30, batch_size=16, class_labels=labels, cond=cond, label_dropout=0.3, progress=False
    )
    seen_labels = torch.cat([s["labels"] for s in model.seen])
    seen_cond = torch.cat([s["cond"] for s in model.seen])
    assert set(seen_labels.tolist()) == {0, 1, 2}
    assert 0.15 < float((seen_labels == 2).float().mean()) < 0.45
    dropped = (seen_cond == 0).all(1)
    assert 0.15 < float(dropped.float().mean()) < 0.45
    assert bool(((seen_cond == 1).all(1) | dropped).all())
    model = _Recorder()
    train_conditional_diffusion(
        model, images, steps=5, batch_size=8, class_labels=labels, label_dropout=0.0, progress=False
    )
    assert 2 not in torch.cat([s["labels"] for s in model.seen]).tolist()


def test_balanced_sampling_draws_the_rare_class_as_often():
    images, labels = _data()
    for balance, low, high in ((False, 0.1, 0.3), (True, 0.4, 0.6)):
        model = _Recorder()
        train_conditional_diffusion(
            model,
            images,
            steps=40,
            batch_size=16,
            class_labels=labels,
            label_dropout=0.0,
            balance_classes=balance,
            progress=False,
        )
        share = float((torch.cat([s["labels"] for s in model.seen]) == 1).float().mean())
        assert low < share < high, (balance, share)


def test_training_a_class_conditional_unet_lowers_the_loss_and_keeps_an_ema():
    images, labels = _data(n=16)
    torch.manual_seed(0)
    model = UNet(num_classes=2, **SMALL)
    result = train_conditional_diffusion(
        model, images, steps=40, batch_size=8, learning_rate=3e-3, class_labels=labels, seed=1, progress=False
    )
    assert len(result.losses) == 40 and np.all(np.isfinite(result.losses))
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    assert result.ema_model is not model and not result.ema_model.training
    ema_params = dict(result.ema_model.named_parameters())
    assert any(not torch.equal(p, ema_params[name]) for name, p in model.named_parameters())


def test_masks_reach_the_model_and_a_controlnet_base_stays_frozen():
    images, _ = _data(n=8)
    masks = torch.randn(8, 1, 8, 8).sign()
    recorder = _Recorder()
    train_conditional_diffusion(recorder, images, steps=2, batch_size=4, masks=masks, progress=False)
    assert recorder.seen[0]["mask"].shape == (4, 1, 8, 8)
    base = UNet(**SMALL)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    controlled = ControlledUNet(base)
    train_conditional_diffusion(controlled, images, steps=3, batch_size=4, masks=masks, progress=False)
    for key, value in base.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    concat = MaskConcat(UNet(in_channels=2, **SMALL))
    assert (
        len(train_conditional_diffusion(concat, images, steps=2, batch_size=4, masks=masks, progress=False).losses) == 2
    )


def test_errors_name_the_input():
    images, labels = _data(n=8)
    with pytest.raises(ValueError, match="class_labels has 3 rows"):
        train_conditional_diffusion(_Recorder(), images, steps=1, class_labels=labels[:3])
    with pytest.raises(ValueError, match="null class"):
        train_conditional_diffusion(UNet(**SMALL), images, steps=1, class_labels=labels, label_dropout=0.1)
    with pytest.raises(ValueError, match="images must be"):
        train_conditional_diffusion(_Recorder(), images[:, 0], steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_conditional_diffusion(_Recorder(), images, steps=0)
    with pytest.raises(ValueError, match="balance_classes"):
        train_conditional_diffusion(_Recorder(), images, steps=1, balance_classes=True)
