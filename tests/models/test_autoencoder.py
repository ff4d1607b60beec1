"""The KL autoencoder wrapper (MONAI's AutoencoderKL), the plain encoder-decoder, their training loop, and the
latent diffusion pipeline's files, on tiny sizes."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import AutoencoderKL

from meddiff_lab.models import LatentAutoencoder, PlainAutoencoder
from meddiff_lab.models.autoencoder import (
    LatentDiffusionPipeline,
    autoencoder_loss,
    encode_dataset,
    kl_divergence,
    load_latent_diffusion,
    save_autoencoder,
    scheduler_for,
    train_autoencoder,
)


def tiny_images(n: int = 24, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centres = torch.rand(n, 2, generator=g) - 0.5
    radius = 0.3 + 0.3 * torch.rand(n, generator=g)
    blobs = ((xx - centres[:, 0, None, None]) ** 2 + (yy - centres[:, 1, None, None]) ** 2) < radius[:, None, None] ** 2
    return (blobs.float() * 1.6 - 0.8)[:, None]


def tiny_autoencoder(**kwargs) -> LatentAutoencoder:
    return LatentAutoencoder(image_size=16, channels=(8, 16), latent_channels=2, norm_num_groups=8, **kwargs)


def test_wraps_monai_autoencoderkl_and_shapes():
    torch.manual_seed(0)
    ae = tiny_autoencoder()
    assert isinstance(ae.autoencoder, AutoencoderKL)
    assert ae.downsample_factor == 2 and ae.latent_shape == (2, 8, 8)
    x = tiny_images(4)
    z = ae.encode(x)
    assert z.shape == (4, 2, 8, 8)
    assert ae.decode(z).shape == x.shape
    recon = ae.reconstruct(x)
    assert recon.shape == x.shape and recon.abs().max() <= 1
    # the posterior mean is what MONAI's own reconstruct() decodes
    torch.testing.assert_close(ae.decode(ae.encode(x)), ae.autoencoder.reconstruct(x))
    assert LatentAutoencoder(image_size=128, channels=(16, 32, 64, 64)).latent_shape == (4, 16, 16)
    with pytest.raises(ValueError, match="divisible"):
        LatentAutoencoder(image_size=30, channels=(8, 16, 16), norm_num_groups=8)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        ae.encode(torch.zeros(2, 3, 16, 16))


def test_scale_factor_gives_unit_variance_latents_and_decode_undoes_it():
    torch.manual_seed(0)
    ae = tiny_autoencoder()
    x = tiny_images(32)
    scale = ae.fit_scale_factor(x)
    assert float(ae.scale_factor) == pytest.approx(scale)
    z_mu, z_sigma = ae.encode_distribution(x)
    sampled = (z_mu + z_sigma * torch.randn(z_mu.shape, generator=torch.Generator().manual_seed(0))) * scale
    assert float(sampled.std()) == pytest.approx(1.0, abs=0.05)
    torch.testing.assert_close(ae.decode(ae.encode(x)), ae.autoencoder.decode(z_mu), atol=1e-5, rtol=1e-5)
    mu, sigma = encode_dataset(ae, x, batch_size=8)
    torch.testing.assert_close(mu, z_mu * scale, atol=1e-5, rtol=1e-5)
    assert sigma.shape == mu.shape and bool((sigma > 0).all())


def test_kl_divergence_formula():
    mu, sigma = torch.zeros(3, 2, 4, 4), torch.ones(3, 2, 4, 4)
    assert float(kl_divergence(mu, sigma)) == 0.0
    mu = torch.full((1, 1, 1, 1), 2.0)
    sigma = torch.full((1, 1, 1, 1), 0.5)
    expected = 0.5 * (4 + 0.25 - torch.log(torch.tensor(0.25)) - 1)
    assert float(kl_divergence(mu, sigma)) == pytest.approx(float(expected))


def test_training_lowers_the_reconstruction_error_of_both_autoencoders():
    x = tiny_images(32)
    torch.manual_seed(0)
    kl_ae = tiny_autoencoder()
    before = float((kl_ae.reconstruct(x) - x).abs().mean())
    run = train_autoencoder(kl_ae, x, steps=30, batch_size=8, learning_rate=3e-3, progress=False, log_every=5)
    after = float((kl_ae.reconstruct(x) - x).abs().mean())
    assert after < 0.7 * before
    assert run.steps == 30 and len(run.history) == 6 and run.images_per_sec > 0
    assert {"loss", "reconstruction", "kl", "images_per_sec"} <= set(run.history[-1])
    assert not kl_ae.training

    torch.manual_seed(0)
    plain = PlainAutoencoder(channels=(8, 16), code_channels=2)
    assert plain.encode(x[:2]).shape == (2, 2, 8, 8) and plain(x[:2]).shape == (2, 1, 16, 16)
    before = float(torch.nn.functional.mse_loss(plain(x), x))
    train_autoencoder(plain, x, steps=30, batch_size=8, learning_rate=3e-3, progress=False)
    with torch.no_grad():
        assert float(torch.nn.functional.mse_loss(plain(x), x)) < 0.5 * before
    loss, parts = autoencoder_loss(plain, x[:4])  # the article's objective: MSE only, no KL
    assert parts["kl"] == 0.0 and float(loss) == pytest.approx(parts["reconstruction"])


def test_max_seconds_stops_training_early():
    ae = tiny_autoencoder()
    run = train_autoencoder(ae, tiny_images(8), steps=10_000, batch_size=4, max_seconds=0.5, progress=False)
    assert 0 < run.steps < 10_000 and run.history[-1]["step"] == run.steps


def test_bad_inputs_name_what_was_expected():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        train_autoencoder(tiny_autoencoder(), torch.zeros(4, 16, 16), steps=1, progress=False)
    with pytest.raises(ValueError, match="'l1' or 'mse'"):
        autoencoder_loss(tiny_autoencoder(), tiny_images(2), reconstruction="ssim")


def test_latent_pipeline_files_round_trip(tmp_path):
    """export_latent_diffusion's file layout, written here by hand on tiny models, loads back and samples."""
    import json

    from safetensors.torch import save_file

    from meddiff_lab.models import UNet

    torch.manual_seed(0)
    ae = tiny_autoencoder()
    ae.fit_scale_factor(tiny_images(8))
    unet = UNet(
        in_channels=2,
        out_channels=2,
        channels=(8, 16),
        attention_levels=(False, True),
        num_head_channels=8,
        norm_num_groups=8,
    )
    tensors = {f"autoencoder.{k}": v for k, v in ae.state_dict().items()}
    tensors.update({f"unet.{k}": v.contiguous() for k, v in unet.state_dict().items()})
    save_file(tensors, str(tmp_path / "tiny.safetensors"))
    config = {
        "image_size": 16,
        "autoencoder": ae.config,
        "scale_factor": float(ae.scale_factor),
        "latent_shape": list(ae.latent_shape),
        "model": {**unet.config, "channels": list(unet.config["channels"])},
        "diffusion": {
            "schedule": "linear",
            "num_train_timesteps": 1000,
            "beta_start": 1e-4,
            "beta_end": 0.02,
            "prediction_type": "v_prediction",
        },
    }
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    pipe = load_latent_diffusion(tmp_path / "tiny.safetensors")
    assert isinstance(pipe, LatentDiffusionPipeline)
    assert float(pipe.autoencoder.scale_factor) == pytest.approx(float(ae.scale_factor))
    images = pipe.sample(n=2, steps=3, seed=0)
    assert images.shape == (2, 1, 16, 16) and images.abs().max() <= 1
    torch.testing.assert_close(images, pipe.sample(n=2, steps=3, seed=0))
    assert type(scheduler_for({"prediction_type": "rectified_flow"})).__name__ == "RectifiedFlowScheduler"
    save_autoencoder(ae, tmp_path / "ae.safetensors")
    assert json.loads((tmp_path / "ae.json").read_text())["scale_factor"] == pytest.approx(float(ae.scale_factor))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_latent_diffusion(tmp_path / "missing.safetensors")


def test_shipped_phantom128_ldm_loads_and_samples():
    from meddiff_lab.models import load_pretrained
    from meddiff_lab.models.pretrained import is_available

    if not is_available("phantom128-ldm"):
        pytest.skip("phantom128-ldm weights are not in data/pretrained")
    pipe = load_pretrained("phantom128-ldm")
    assert pipe.config["image_size"] == 128 and pipe.config["latent_shape"] == [4, 32, 32]
    assert float(pipe.autoencoder.scale_factor) == pytest.approx(pipe.config["scale_factor"])
    assert not pipe.model.training and not pipe.autoencoder.training
    images = pipe.sample(n=2, steps=2, seed=0)
    assert images.shape == (2, 1, 128, 128) and bool(torch.isfinite(images).all()) and images.abs().max() <= 1
