"""Download helpers for the chest radiograph sets that can be fetched without registration.

Nothing here runs unless asked (``meddiff-lab data download medmnist|mednist --root data/downloads``;
``data/downloads/`` is git-ignored and the readers look there).
Offline, or behind a firewall, each helper stops with a :class:`DownloadError` that says what
failed, where to get the file by hand and where to put it. ChestX-ray14 (42 GB, NIH Box) and the
Kermany pneumonia set (Mendeley/Kaggle) are not downloaded here: ``data/README.md`` explains how.

=============  ==============================================================  =================
dataset        files                                                           licence
=============  ==============================================================  =================
MedMNIST v3    ``chestmnist.npz`` (28 px; ``chestmnist_{64,128,224}.npz``),     ChestMNIST CC0 1.0,
               ``pneumoniamnist.npz`` from Zenodo record 10519652               PneumoniaMNIST CC BY 4.0
MedNIST        ``MedNIST.tar.gz`` (MONAI's copy, extracted to ``MedNIST/``)     CC BY-SA 4.0 (per MONAI)
=============  ==============================================================  =================
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DownloadError",
    "download_medmnist",
    "download_mednist",
    "MEDMNIST_URL",
    "MEDMNIST_MD5",
    "MEDMNIST_DEFAULT_FLAGS",
    "MEDNIST_URL",
    "MEDNIST_MD5",
]

MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{name}?download=1"
#: MD5 checksums of the 28 px files, as published in MedMNIST's INFO.
MEDMNIST_MD5 = {
    "chestmnist.npz": "02c8a6516a18b556561a56cbdd36c4a8",
    "pneumoniamnist.npz": "28209eda62fecd6e6a2d98b1501bb15f",
}
MEDMNIST_DEFAULT_FLAGS = ("chestmnist", "pneumoniamnist")
MEDMNIST_SIZES = (28, 64, 128, 224)


class DownloadError(RuntimeError):
    """A download failed (offline, blocked, interrupted or corrupted); the message says what to do."""


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, md5: str | None = None, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``), check ``md5``; skip when already there and valid."""
    dest = Path(dest)
    if dest.is_file() and (md5 is None or _md5(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                try:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name)
                except ImportError:  # pragma: no cover
                    bar = None
            while True:
                block = response.read(1 << 20)
                if not block:
                    break
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"could not download {url}: {reason}. This machine seems to be offline or the host is blocked. "
            f"Download the file by hand (in a browser) and save it as {dest}; see data/README.md. "
            f"DATA_SOURCE='synthetic' works without any download."
        ) from None
    if md5 is not None:
        got = _md5(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url} arrived corrupted (MD5 {got}, expected {md5}); try again")
    part.replace(dest)
    return dest


def download_medmnist(
    root,
    flags: Sequence[str] = MEDMNIST_DEFAULT_FLAGS,
    size: int | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> list[Path]:
    """Download MedMNIST ``.npz`` files into ``root/medmnist/``.

    Args:
        root: the data folder (``DATA_DIR``).
        flags: MedMNIST dataset names, e.g. ``("chestmnist", "pneumoniamnist")``.
        size: None or 28 for the original 28 px files, or 64 / 128 / 224 (MedMNIST+).

    Returns:
        The paths of the files (already present ones are kept).

    Raises:
        ValueError: for a size MedMNIST does not publish.
        DownloadError: offline, blocked or corrupted, with what to do instead.
    """
    if size not in (None,) + MEDMNIST_SIZES:
        raise ValueError(f"MedMNIST size must be one of {MEDMNIST_SIZES}, got {size!r}")
    folder = Path(root) / "medmnist"
    paths = []
    for flag in flags:
        name = f"{flag}.npz" if size in (None, 28) else f"{flag}_{size}.npz"
        paths.append(_fetch(MEDMNIST_URL.format(name=name), folder / name, MEDMNIST_MD5.get(name), timeout, progress))
    return paths


#: MONAI's MedNIST archive and its MD5 (as in ``monai.apps.MedNISTDataset.resource`` / ``.md5``).
MEDNIST_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz"
MEDNIST_MD5 = "0bc7306e7427e00ad1c5526a6677552d"


def download_mednist(root, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download MONAI's MedNIST (about 60 MB) and extract it to ``root/MedNIST/``.

    Returns:
        The ``MedNIST`` folder (with ``CXR/``, ``AbdomenCT/``, ... subfolders of 64×64 JPEGs).

    Raises:
        DownloadError: offline, blocked or corrupted, with what to do instead.
    """
    root = Path(root)
    target = root / "MedNIST"
    if (target / "CXR").is_dir():
        return target
    archive = _fetch(MEDNIST_URL, root / "MedNIST.tar.gz", MEDNIST_MD5, timeout, progress)
    try:
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(root, filter="data")
            except TypeError:  # pragma: no cover - Python without extraction filters
                tar.extractall(root)
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive} is not a readable tar.gz ({exc}); delete it and try again") from None
    if not (target / "CXR").is_dir():
        raise DownloadError(f"{archive} did not contain MedNIST/CXR; delete it and try again")
    return target
