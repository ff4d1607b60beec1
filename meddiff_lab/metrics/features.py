"""Feature extractors for FID/KID/precision-recall: a domain encoder, ImageNet Inception, RadImageNet.

FID is only as good as the features it compares. The historical choice, Inception-v3 trained on
ImageNet photographs, was never shown a radiograph: its features describe textures, colours and
objects, and it must be fed a grey 64-pixel chest film copied into three colour channels and blown
up to 299 pixels. Whether the heart is too large, a lung field is missing or ribs are doubled matters
little to it. Three extractors, one interface (a module mapping ``(B, 1, H, W)`` in [-1, 1] to
``(B, F)``):

* :class:`PhantomEncoder` — a small CNN trained on the phantom radiographs by
  ``meddiff-lab metrics train-encoder`` to predict the 14 finding labels, the cardiothoracic ratio,
  the view (AP/PA) and sex, how much noise and blur an image carries, and to tell images apart
  under small shifts and contrast changes (an instance-discrimination loss, as copy detectors are
  trained). Shipped in ``data/pretrained/`` (:func:`load_phantom_encoder`).
* :func:`load_inception` — the FID Inception-v3 (the TensorFlow 2015 graph every FID paper uses), from
  the TorchScript file ``inception-2015-12-05.pt`` when it is on disk, or timm's ImageNet
  Inception-v3 when timm and its weights are installed.
* :func:`load_radimagenet` — a ResNet-50 trained on RadImageNet (1.35 M CT, MRI and ultrasound
  images; Mei et al. 2022), from a local weights file in the layout of the PyTorch conversion used
  by MONAI's generative tutorials.

The last two need files that cannot be downloaded here; their loaders are real and raise
:class:`WeightsNotAvailable`, which says where to get the file and where to put it.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from meddiff_lab.metrics._inputs import image_batch

PHANTOM_ENCODER_NAME = "phantom_encoder"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
RADIMAGENET_FILES = ("RadImageNet-ResNet50_notop.pth", "radimagenet_resnet50.pth", "radimagenet_resnet50.safetensors")
RADIMAGENET_SOURCE = (
    "the RadImageNet ResNet-50 converted to PyTorch (e.g. torch.hub.load('Warvito/radimagenet-models', "
    "'radimagenet_resnet50') downloads it into ~/.cache/torch/hub/checkpoints/)"
)


class WeightsNotAvailable(FileNotFoundError):
    """Pretrained weights that a feature extractor needs are not on this machine."""


# ---------------------------------------------------------------------------------- where weights are
def pretrained_dirs() -> list[Path]:
    """Folders searched for weight files, in order: ``$MEDDIFF_WEIGHTS_DIR``, the repository's
    ``data/pretrained/``, ``./data/pretrained`` and ``../data/pretrained`` (from ``notebooks/``), and
    PyTorch's hub cache (``~/.cache/torch/hub/checkpoints``)."""
    dirs = []
    if os.environ.get("MEDDIFF_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["MEDDIFF_WEIGHTS_DIR"]))
    dirs += [
        Path(__file__).resolve().parents[2] / "data" / "pretrained",
        Path("data/pretrained"),
        Path("../data/pretrained"),
        Path(torch.hub.get_dir()) / "checkpoints",
    ]
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_weights(names: Sequence[str]) -> Path | None:
    """The first existing file called one of ``names`` in :func:`pretrained_dirs`, else ``None``."""
    for folder in pretrained_dirs():
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _searched() -> str:
    return ", ".join(str(d) for d in pretrained_dirs())


# ------------------------------------------------------------------------------------ the domain encoder
class _Stage(nn.Module):
    """Downsample by 2 (strided 3x3 conv) then one residual 3x3 conv; BatchNorm + SiLU.

    BatchNorm, not GroupNorm: GroupNorm rescales every image by its own statistics, which hides how
    noisy or blurred an image is (an encoder with GroupNorm did not learn the noise level at all);
    BatchNorm in eval mode applies the same fixed scaling to every image.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.down = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.down(x)))
        return h + F.silu(self.norm2(self.conv(h)))


class PhantomEncoder(nn.Module):
    """A small CNN that turns a chest radiograph into a ``feature_dim`` vector, plus its training heads.

    Architecture: a strided 4x4 stem (halves the size), then one :class:`_Stage` per entry of
    ``channels`` (each halves it again: 64 -> 32 -> 16 -> 8 -> 4 -> 2), global average pooling, a
    linear layer to ``feature_dim`` (the features FID uses), and
    heads on the features: finding logits (14), cardiothoracic ratio, view (AP) and sex (F) logits,
    image quality (how much noise and blur was added), and a projection for the
    instance-discrimination loss.

    Args:
        channels: width of each stage.
        ctr_mean, ctr_std: the training set's cardiothoracic-ratio statistics (the head predicts the
            standardised ratio).
        feature_dim: F, the size of the feature vector.
        num_labels: number of finding labels (14 ChestX-ray14 findings).
        input_size: images are resized to this side (bilinear, antialiased) before the network,
            so any size works; the shipped encoder was trained at 64 (and 32 upsampled to 64).
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 96, 96),
        feature_dim: int = 32,
        num_labels: int = 14,
        input_size: int = 64,
        projection_dim: int = 64,
        ctr_mean: float = 0.5,
        ctr_std: float = 0.08,
    ):
        super().__init__()
        self.config = {
            "channels": list(channels),
            "feature_dim": feature_dim,
            "num_labels": num_labels,
            "input_size": input_size,
            "projection_dim": projection_dim,
            "ctr_mean": float(ctr_mean),
            "ctr_std": float(ctr_std),
        }
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 4, stride=2, padding=1), nn.BatchNorm2d(channels[0]), nn.SiLU()
        )
        widths = [channels[0], *channels]
        self.stages = nn.Sequential(*[_Stage(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.to_features = nn.Linear(channels[-1], feature_dim)
        self.label_head = nn.Linear(feature_dim, num_labels)
        self.ctr_head = nn.Linear(feature_dim, 1)
        self.view_sex_head = nn.Linear(feature_dim, 2)
        self.quality_head = nn.Linear(feature_dim, 2)
        self.projection = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.SiLU(), nn.Linear(feature_dim, projection_dim)
        )

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config["input_size"]
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` float32 in [-1, 1] -> features ``(B, feature_dim)``."""
        h = self.stages(self.stem(self._resize(images)))
        return self.to_features(h.mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """All outputs: ``features`` (B, F), ``label_logits`` (B, 14), ``ctr_standardized`` (B,) and
        ``ctr`` (B,) (the cardiothoracic ratio, ``ctr_mean + ctr_std * ctr_standardized``),
        ``view_sex_logits`` (B, 2: AP, female), ``quality`` (B, 2: the noise and blur levels, as
        fractions of the largest ones seen in training), ``projection`` (B, P) L2-normalised."""
        feats = self.features(images)
        ctr_standardized = self.ctr_head(feats)[:, 0]
        return {
            "features": feats,
            "label_logits": self.label_head(feats),
            "ctr_standardized": ctr_standardized,
            "ctr": self.config["ctr_mean"] + self.config["ctr_std"] * ctr_standardized,
            "view_sex_logits": self.view_sex_head(feats),
            "quality": self.quality_head(feats),
            "projection": F.normalize(self.projection(feats), dim=1),
        }


class _FeaturesOnly(nn.Module):
    """Wrap an encoder so that calling it returns only the features (the extractor interface)."""

    name = "phantom"

    def __init__(self, encoder: PhantomEncoder):
        super().__init__()
        self.encoder = encoder
        self.feature_dim = encoder.config["feature_dim"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(images)


class _CopyEmbedding(nn.Module):
    """Wrap an encoder so that calling it returns its instance-discrimination projection ``(B, P)``:
    the embedding trained to match an image with its shifted, contrast-changed, noisy copies and to
    tell it from every other image (what a copy detector needs)."""

    name = "phantom copy embedding"

    def __init__(self, encoder: PhantomEncoder):
        super().__init__()
        self.encoder = encoder
        self.feature_dim = encoder.config["projection_dim"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder.projection(self.encoder.features(images)), dim=1)


def save_phantom_encoder(
    encoder: PhantomEncoder, out_dir, card: dict | None = None, name: str = PHANTOM_ENCODER_NAME
) -> Path:
    """Write ``name.safetensors`` (the weights) and ``name.json`` (config + ``card``) into ``out_dir``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    path = out_dir / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={"config": json.dumps(encoder.config)})
    (out_dir / f"{name}.json").write_text(
        json.dumps({"config": encoder.config, **(card or {})}, indent=2) + "\n", encoding="utf-8"
    )
    return path


ENCODER_OUTPUTS = ("features", "copy_embedding", "encoder")


def load_phantom_encoder(path=None, output: str = "features") -> nn.Module:
    """Load the shipped domain encoder (``data/pretrained/phantom_encoder.safetensors``), in eval mode.

    Args:
        path: a ``.safetensors`` file; ``None`` searches :func:`pretrained_dirs`.
        output: ``"features"``: a module mapping ``(B, 1, H, W)`` in [-1, 1] to the features ``(B, F)``
            that FID/KID/precision-recall compare; ``"copy_embedding"``: to the L2-normalised
            instance-discrimination embedding ``(B, P)`` for the memorisation check; ``"encoder"``: the
            :class:`PhantomEncoder` itself, with all its heads.
    Raises:
        WeightsNotAvailable: when the file is missing (it ships with the repository; retrain it with
            ``meddiff-lab metrics train-encoder --config configs/phantom_encoder.yaml --out DIR``).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    if output not in ENCODER_OUTPUTS:
        raise ValueError(f"output must be one of {ENCODER_OUTPUTS}, got {output!r}")
    if path is None:
        path = find_weights([f"{PHANTOM_ENCODER_NAME}.safetensors"])
        if path is None:
            raise WeightsNotAvailable(
                f"the phantom encoder weights ({PHANTOM_ENCODER_NAME}.safetensors) were not found in {_searched()}; "
                f"train them with `meddiff-lab metrics train-encoder --config configs/phantom_encoder.yaml "
                f"--out data/pretrained` (a few minutes on one CPU thread)"
            )
    path = Path(path)
    if not path.is_file():
        raise WeightsNotAvailable(f"encoder weights file {path} does not exist")
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    if "config" not in metadata:
        raise ValueError(f"{path} is not a phantom-encoder file (its safetensors metadata has no 'config')")
    encoder = PhantomEncoder(**json.loads(metadata["config"]))
    encoder.load_state_dict(load_file(str(path)))
    encoder.eval().requires_grad_(False)
    if output == "encoder":
        return encoder
    return (_FeaturesOnly(encoder) if output == "features" else _CopyEmbedding(encoder)).eval()


# --------------------------------------------------------------------------------- ImageNet Inception
class _InceptionFeatures(nn.Module):
    """Grey [-1, 1] images -> the FID Inception's 2048-d pool features.

    The TorchScript graph takes RGB images with values in [0, 255] and normalises them itself; the
    images are resized to its 299 x 299 input here (bilinear).
    """

    feature_dim = 2048
    name = "inception"

    def __init__(self, network: nn.Module, kind: str):
        super().__init__()
        self.network, self.kind = network, kind

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = ((images.clamp(-1, 1) + 1) / 2).repeat(1, 3, 1, 1)
        rgb = F.interpolate(rgb, size=(299, 299), mode="bilinear", align_corners=False)
        if self.kind == "torchscript":
            return self.network(rgb * 255, return_features=True).reshape(len(images), -1)
        mean = torch.tensor([0.485, 0.456, 0.406], device=rgb.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=rgb.device).view(1, 3, 1, 1)
        return self.network((rgb - mean) / std).reshape(len(images), -1)


def load_inception(path=None) -> nn.Module:
    """ImageNet Inception-v3 pool features (2048-d) for FID, as every FID paper computes them.

    Looks for, in order: ``path``; the TorchScript FID Inception ``inception-2015-12-05.pt`` (NVIDIA's
    export of the TensorFlow graph, used by StyleGAN2-ADA and clean-fid) in :func:`pretrained_dirs`;
    timm's ``inception_v3.tf_in1k`` when timm is installed and its weights are cached.

    Returns:
        a module mapping ``(B, 1, H, W)`` in [-1, 1] to ``(B, 2048)``.
    Raises:
        WeightsNotAvailable: with where to download the file and where to put it.
    """
    if path is None:
        path = find_weights([INCEPTION_FILE])
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise WeightsNotAvailable(f"Inception weights file {path} does not exist")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not a TorchScript archive; expected {INCEPTION_FILE} from {INCEPTION_URL}")
        with warnings.catch_warnings():  # TorchScript is deprecated for new models, not for loading old ones
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(str(path), map_location="cpu").eval()
        return _InceptionFeatures(network, "torchscript").eval()
    try:
        import timm  # noqa: F401
    except ImportError:
        timm = None
    if timm is not None:
        try:
            network = timm.create_model("inception_v3.tf_in1k", pretrained=True, num_classes=0).eval()
            return _InceptionFeatures(network, "timm").eval()
        except Exception as exc:  # offline, no cached weights
            reason = f"timm is installed but could not load its weights ({type(exc).__name__}: {exc})"
    else:
        reason = "timm is not installed"
    raise WeightsNotAvailable(
        f"ImageNet Inception weights are not on this machine ({reason}). Download {INCEPTION_URL} "
        f"(about 95 MB) and put {INCEPTION_FILE} in one of: {_searched()}; or set $MEDDIFF_WEIGHTS_DIR."
    )


# -------------------------------------------------------------------------------------- RadImageNet
class _Bottleneck(nn.Module):
    """ResNet-50 bottleneck in the Keras layout RadImageNet was trained in: biased convs, stride in the 1x1."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, stride=stride)
        self.bn1 = nn.BatchNorm2d(planes, eps=1.001e-5)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(planes, eps=1.001e-5)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4, eps=1.001e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class RadImageNetResNet50(nn.Module):
    """ResNet-50 without its classifier ("notop"), parameter names as in the PyTorch conversion of
    RadImageNet's Keras weights (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layer4.2.bn3``)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64, eps=1.001e-5)
        self.in_planes = 64
        self.layer1 = self._make_layer(64, 3, 1)
        self.layer2 = self._make_layer(128, 4, 2)
        self.layer3 = self._make_layer(256, 6, 2)
        self.layer4 = self._make_layer(512, 3, 2)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self.in_planes, planes * 4, 1, stride=stride), nn.BatchNorm2d(planes * 4, eps=1.001e-5)
        )
        layers = [_Bottleneck(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * 4
        layers += [_Bottleneck(self.in_planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class _RadImageNetFeatures(nn.Module):
    """Grey [-1, 1] -> RadImageNet ResNet-50 features (2048-d): [0, 1], three channels in BGR order,
    the training means subtracted (Keras "caffe" style), then a spatial average of the last stage."""

    feature_dim = 2048
    name = "radimagenet"

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.register_buffer("bgr_mean", torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = (images.clamp(-1, 1) + 1) / 2
        bgr = grey.repeat(1, 3, 1, 1) - self.bgr_mean  # a grey image is the same in RGB and BGR
        return self.network(bgr).mean(dim=(2, 3))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as exc:
        raise ValueError(
            f"{path} could not be read as a PyTorch state dict ({type(exc).__name__}: {exc}); expected "
            f"{RADIMAGENET_SOURCE}"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_radimagenet(path=None) -> nn.Module:
    """RadImageNet ResNet-50 features (2048-d) from a local weights file.

    Args:
        path: ``.pth`` (a state dict; read with ``weights_only=True``), ``.safetensors``, or a TorchScript
            archive; ``None`` searches :func:`pretrained_dirs` for ``RadImageNet-ResNet50_notop.pth`` and
            similar names.
    Returns:
        a module mapping ``(B, 1, H, W)`` in [-1, 1] to ``(B, 2048)``.
    Raises:
        WeightsNotAvailable: when no file is found; ValueError: when the file's parameters do not fit.
    """
    if path is None:
        path = find_weights(RADIMAGENET_FILES)
        if path is None:
            raise WeightsNotAvailable(
                f"RadImageNet weights are not on this machine. Get {RADIMAGENET_SOURCE} and put the file as "
                f"{RADIMAGENET_FILES[0]} in one of: {_searched()}; or set $MEDDIFF_WEIGHTS_DIR."
            )
    path = Path(path)
    if not path.is_file():
        raise WeightsNotAvailable(f"RadImageNet weights file {path} does not exist")
    if path.suffix != ".safetensors" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any(name.endswith("constants.pkl") for name in archive.namelist())
        if scripted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return _RadImageNetFeatures(torch.jit.load(str(path), map_location="cpu")).eval()
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    network = RadImageNetResNet50()
    expected = {k: v.shape for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(shape)}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != tuple(shape)
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not fit a RadImageNet ResNet-50: {len(missing)} missing parameters "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} of the wrong shape (e.g. {wrong[:2]})"
        )
    network.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent
    return _RadImageNetFeatures(network.eval()).eval()


# ------------------------------------------------------------------------------------------ extraction
_LOADERS: dict[str, Callable[[], nn.Module]] = {
    "phantom": load_phantom_encoder,
    "inception": load_inception,
    "radimagenet": load_radimagenet,
}


def extract_features(
    images,
    extractor: str | nn.Module | Callable = "phantom",
    batch_size: int = 64,
    value_range: Sequence[float] = (-1.0, 1.0),
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Features of a set of images, batch by batch, without gradients.

    Args:
        images: ``(N, 1, H, W)`` or ``(N, H, W)`` tensor/array with values in ``value_range``.
        extractor: ``"phantom"`` (the shipped domain encoder), ``"inception"``, ``"radimagenet"``, or a
            module/callable mapping ``(B, 1, H, W)`` in [-1, 1] to ``(B, F)``.
        batch_size: images per forward pass.
        value_range: the images' (min, max), mapped to [-1, 1] (phantoms are in [0, 1]: pass ``(0, 1)``).
        device: where to run (default: the extractor's device, else CPU).
    Returns:
        ``(N, F)`` float32 features on the CPU.
    """
    if isinstance(extractor, str):
        if extractor not in _LOADERS:
            raise ValueError(f"unknown extractor {extractor!r}; expected one of {sorted(_LOADERS)} or a module")
        extractor = _LOADERS[extractor]()
    batch = image_batch(images, "images")
    if batch.ndim != 4 or batch.shape[1] != 1:
        raise ValueError(f"images must be grey 2D images (N, 1, H, W) or (N, H, W), got shape {tuple(batch.shape)}")
    low, high = float(value_range[0]), float(value_range[1])
    if not high > low:
        raise ValueError(f"value_range must be (min, max) with max > min, got {tuple(value_range)}")
    if device is None and isinstance(extractor, nn.Module):
        params = list(extractor.parameters())
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device or "cpu")
    out = []
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            chunk = (batch[start : start + batch_size].to(device) - low) / (high - low) * 2 - 1
            out.append(extractor(chunk).float().cpu())
    features = torch.cat(out)
    if features.ndim != 2:
        features = features.reshape(len(batch), -1)
    return features


__all__ = [
    "PhantomEncoder",
    "load_phantom_encoder",
    "save_phantom_encoder",
    "load_inception",
    "load_radimagenet",
    "extract_features",
    "RadImageNetResNet50",
    "WeightsNotAvailable",
    "pretrained_dirs",
    "find_weights",
]
