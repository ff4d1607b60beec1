"""The ``meddiff-lab`` command line: ``course``, ``data``, ``train``, ``sample``, ``bench``, ``metrics``.

Each group's arguments are declared in its own ``_add_*`` function below; the work itself lives in
the package module named there, so the CLI and the notebooks run the same code.

One error path: a failure the user caused (a wrong path, a bad config value, a damaged file, a full
disk) ends the command with one line on stderr naming the input and what was expected, and exit
code 2; a bug in the package stays a traceback. Output paths are checked before any long work.

Each command imports the package modules it runs inside its own function, not at the top of this
file: ``meddiff-lab --help`` and a mistyped option then answer in about 0.1 s instead of the 3-5 s
that importing torch, MONAI and the models takes.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path


# ---------------------------------------------------------------------------------------- checks
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit 2) instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


_positive_int, _nonnegative_int = _int_at_least(1), _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {value}")
    return value


_positive_float.__name__ = "positive number"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {value}")
    return value


def _check_writable(target: Path, option: str) -> None:
    """The first existing folder on the way to ``target`` must be a writable folder, not a file."""
    for ancestor in (target, *target.parents):
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                raise ValueError(f"{option} {target} cannot be created: {ancestor} is a file, not a folder")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ValueError(f"{option} {target} cannot be written: no permission to write in {ancestor}")
            return


def _check_out_dir(path: Path, option: str = "--out") -> None:
    """``path`` will be a folder: refuse a file, a path under a file, or a folder we cannot write."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; expected a folder (created when missing)")
    _check_writable(path, option)


def _check_out_file(path: Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> None:
    """``path`` will be a file: refuse a folder, a wrong extension, or a parent that cannot hold it."""
    if path.is_dir():
        raise ValueError(
            f"{option} {path} is a folder; expected a file name" + (f" ending in {suffixes[0]}" if suffixes else "")
        )
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {path} must end in {' or '.join(suffixes)}")
    _check_writable(path.parent, option)


def _user_error_message(exc: BaseException) -> str | None:
    """One line for a failure the user caused; ``None`` for a bug (which then stays a traceback)."""
    if isinstance(exc, OSError):
        if exc.filename is not None and exc.strerror:
            name = str(exc.filename)
            text = exc.strerror if name in exc.strerror else f"{name}: {exc.strerror}"
            hints = {
                errno.ENOSPC: "the disk is full; free some space or write elsewhere",
                errno.EDQUOT: "the disk quota is used up",
                errno.ENOTDIR: "a part of this path is a file, not a folder",
                errno.EISDIR: "this is a folder; a file was expected",
                errno.EACCES: "check the file's permissions",
                errno.EPERM: "check the file's permissions",
                errno.EROFS: "the file system is read-only",
            }
            hint = hints.get(exc.errno)
            return f"{text} ({hint})" if hint and hint not in text else text
        return str(exc) or type(exc).__name__
    if isinstance(exc, ValueError):
        return str(exc) or type(exc).__name__
    try:
        import yaml

        if isinstance(exc, yaml.YAMLError):
            return f"invalid YAML: {exc}"
    except ImportError:  # pragma: no cover
        pass
    return None


# ----------------------------------------------------------------------------------------- course
def _add_course_commands(sub: argparse._SubParsersAction) -> None:
    course = sub.add_parser("course", help="list or run the course notebooks headless (papermill)")
    csub = course.add_subparsers(dest="course_command", required=True)
    csub.add_parser("list", help="print the notebooks in course order").set_defaults(func=_course_list)
    run = csub.add_parser("run", help="run notebooks; writes executed notebooks, metrics.json, report.md/html")
    run.add_argument(
        "--profile",
        default=None,
        choices=("ci", "classroom", "full"),
        help="ci | classroom | full (default: $MEDDIFF_PROFILE or classroom)",
    )
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these notebooks")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    run.set_defaults(func=_course_run)


def _course_list(args: argparse.Namespace) -> int:
    from meddiff_lab import course

    present = set(course.available_notebooks())
    for name in course.NOTEBOOKS:
        print(f"{name}{'' if name in present else '  (not written yet)'}")
    return 0


def _course_run(args: argparse.Namespace) -> int:
    from meddiff_lab import course
    from meddiff_lab.runtime import default_profile_name

    profile = args.profile or default_profile_name()
    _check_out_dir(args.out)
    results = course.run(profile, args.out, only=args.only, kernel=args.kernel)
    failed = [r for r in results if r.status != "passed"]
    print(
        f"\n{len(results) - len(failed)} of {len(results)} notebooks passed "
        f"in {sum(r.seconds for r in results):.0f} s. Report: {args.out / 'report.md'} (and report.html)"
    )
    for r in results:
        if r.over_budget:
            print(f"OVER BUDGET {r.name} ({profile} profile): {', '.join(r.over_budget)}", file=sys.stderr)
    for r in failed:
        err = r.error or {}
        print(
            f"FAILED {r.name}: cell {err.get('cell_index', '?')}: {err.get('ename')}: {err.get('evalue')}",
            file=sys.stderr,
        )
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------ train
def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a diffusion U-Net from a YAML config (one process; several with `accelerate launch`)",
        description="Train a diffusion U-Net. DIR gets log.csv, last.pt (resumable checkpoint), config.yaml and "
        "samples/*.png. Several processes or GPUs: accelerate launch --num_processes N -m "
        "meddiff_lab.cli train --config FILE --out DIR",
    )
    train.add_argument(
        "--config", required=True, type=Path, help="training config (YAML), e.g. configs/smoke_test_16px.yaml"
    )
    train.add_argument("--out", required=True, type=Path, help="output folder (log.csv, last.pt, samples/)")
    train.add_argument("--resume", action="store_true", help="continue from DIR/last.pt if it exists")
    train.add_argument(
        "--max-steps",
        type=_positive_int,
        default=None,
        help="total optimizer steps of the run, resumed or not (default: the config's)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=_nonnegative_int,
        default=None,
        help="save DIR/last.pt every N steps (0: only at the end)",
    )
    train.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: the config's)")
    train.add_argument(
        "--time-budget",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop about SECONDS after start: max_steps is fitted to the speed measured in the "
        "first steps, so the learning-rate schedule ends with the run (written to config.yaml)",
    )
    train.set_defaults(func=_train)

    latent = sub.add_parser(
        "train-latent",
        help="train (or resume) a two-stage latent diffusion model from a YAML config",
        description="Stage 1 trains the KL autoencoder (DIR/autoencoder.pt), stage 2 the latent U-Net (DIR/latent.pt); "
        "each stage stops at its steps or max_seconds. E.g. meddiff-lab train-latent --config "
        "configs/phantom128_ldm.yaml --out runs/phantom128-ldm --resume --export "
        "data/pretrained/phantom128-ldm.safetensors",
    )
    latent.add_argument("--config", required=True, type=Path, help="latent diffusion config (YAML)")
    latent.add_argument("--out", required=True, type=Path, help="output folder (autoencoder.pt, latent.pt)")
    latent.add_argument("--resume", action="store_true", help="continue from the checkpoints in DIR")
    latent.add_argument("--stage", choices=("all", "autoencoder"), default="all")
    latent.add_argument(
        "--export",
        type=Path,
        default=None,
        help="after training, write this .safetensors (and its .json) for load_pretrained",
    )
    latent.set_defaults(func=_train_latent)

    sample = sub.add_parser("sample", help="draw DDIM samples from a shipped model or a checkpoint into a PNG grid")
    sample.add_argument(
        "--model",
        required=True,
        help="a shipped model name (see PRETRAINED), a training checkpoint (.pt, EMA weights "
        "are used) or an exported .safetensors file",
    )
    sample.add_argument("--n", type=_positive_int, default=16, help="number of images (default 16)")
    sample.add_argument("--steps", type=_positive_int, default=50, help="DDIM steps (default 50)")
    sample.add_argument("--out", required=True, type=Path, help="PNG file for the grid")
    sample.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed (default 0)")
    sample.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
    sample.set_defaults(func=_sample)

    export = sub.add_parser("export", help="export a checkpoint's EMA weights as safetensors + JSON config")
    export.add_argument("--checkpoint", required=True, type=Path, help="a training checkpoint (last.pt)")
    export.add_argument("--out", required=True, type=Path, help="destination .safetensors (JSON written beside it)")
    export.add_argument("--command", default=None, help="the training command, recorded in the JSON")
    export.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    export.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    from meddiff_lab.training.trainer import NonFiniteLossError, TrainConfig, train_from_config

    _check_out_dir(args.out)
    config = TrainConfig.from_yaml(args.config)  # a bad config is reported before anything is written
    try:
        train_from_config(
            config,
            args.out,
            resume=args.resume,
            max_steps=args.max_steps,
            checkpoint_every=args.checkpoint_every,
            threads=args.threads,
            time_budget_s=args.time_budget,
        )
    except NonFiniteLossError as exc:
        print(f"meddiff-lab train: {exc}", file=sys.stderr)
        return 3
    return 0


def _train_latent(args: argparse.Namespace) -> int:
    from meddiff_lab.training.latent import (
        export_latent_diffusion,
        load_latent_config,
        train_latent_diffusion_from_config,
    )

    load_latent_config(args.config)  # a bad config is reported before anything is written
    _check_out_dir(args.out)
    if args.export is not None:
        _check_out_file(args.export, "--export", suffixes=(".safetensors",))
    train_latent_diffusion_from_config(args.config, args.out, resume=args.resume, stage=args.stage)
    if args.export is not None:
        command = (
            f"meddiff-lab train-latent --config {args.config} --out {args.out}"
            + (" --resume" if args.resume else "")
            + f" --export {args.export}"
        )
        print(f"exported {export_latent_diffusion(args.out, args.export, args.config, command)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import time

    import torch
    from PIL import Image

    from meddiff_lab.diffusion.sampling import generate_samples
    from meddiff_lab.viz.grids import save_image_grid

    suffixes = tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE))
    _check_out_file(args.out, suffixes=(".png",) + tuple(x for x in suffixes if x != ".png"))
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = _load_model(args.model)
    start = time.perf_counter()
    images = generate_samples(
        loaded.model, loaded.scheduler, args.n, loaded.config["image_size"], args.steps, seed=args.seed, progress=True
    )
    seconds = time.perf_counter() - start
    save_image_grid(images, args.out)
    print(f"{args.n} samples, DDIM-{args.steps}, in {seconds:.1f} s on {torch.get_num_threads()} thread(s): {args.out}")
    return 0


def _check_finite_weights(state_dict, what: str) -> None:
    from meddiff_lab.checkpoint import nonfinite_tensors

    bad = nonfinite_tensors(state_dict)
    if bad:
        raise ValueError(
            f"{what}: {len(bad)} weight tensor(s) hold NaN or inf (first: {bad[0]}), so every image "
            f"would be garbage; the run diverged? use an earlier checkpoint"
        )


def _load_model(spec: str):
    """``load_model(spec)`` with every failure of the file turned into one line naming it; weights checked finite."""
    import json

    from meddiff_lab.models.pretrained import load_model
    from meddiff_lab.runtime import get_device

    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover
        SafetensorError = RuntimeError
    try:
        loaded = load_model(spec, device=get_device())  # $MEDDIFF_DEVICE, else CUDA when present
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model {spec}: its JSON config is not valid JSON ({exc})") from None
    except KeyError as exc:
        raise ValueError(
            f"--model {spec}: its config lacks the key {exc.args[0]!r}; expected image_size, model "
            f"(UNet keyword arguments) and the diffusion settings"
        ) from None
    except SafetensorError as exc:
        raise ValueError(
            f"--model {spec}: not a readable .safetensors file (truncated, or another format): {exc}"
        ) from None
    except ValueError as exc:  # the loader's own checks (e.g. NaN weights) name the file; say which option
        raise ValueError(f"--model {spec}: {exc}") from None
    except (RuntimeError, TypeError, AttributeError) as exc:
        text = " ".join(str(exc).split())
        raise ValueError(
            f"--model {spec}: its weights and config do not make a model: "
            f"{text[:300]}{'...' if len(text) > 300 else ''}"
        ) from None
    _check_finite_weights(loaded.model.state_dict(), f"--model {spec}")
    return loaded


def _export(args: argparse.Namespace) -> int:
    from meddiff_lab.checkpoint import load_checkpoint
    from meddiff_lab.models.pretrained import export_checkpoint

    _check_out_file(args.out, suffixes=(".safetensors",))
    state = load_checkpoint(args.checkpoint)
    _check_finite_weights(
        state["ema"]["model"] if isinstance(state.get("ema"), dict) and "model" in state["ema"] else state["model"],
        f"--checkpoint {args.checkpoint}",
    )
    try:
        path = export_checkpoint(args.checkpoint, args.out, command=args.command, half=args.half)
    except KeyError as exc:
        raise ValueError(
            f"--checkpoint {args.checkpoint}: its training config lacks the key {exc.args[0]!r}; "
            f"expected a checkpoint written by meddiff-lab train"
        ) from None
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


# ------------------------------------------------------------------------------------------- data
def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data", help="write the synthetic chest radiographs, draw a gallery, check or download datasets"
    )
    dsub = data.add_subparsers(dest="data_command", required=True)
    write = dsub.add_parser("write", help="write synthetic phantoms in the NIH ChestX-ray14 layout (with masks)")
    write.add_argument("--out", required=True, type=Path, help="output folder, e.g. data/synthetic_cxr")
    write.add_argument("--n", type=_positive_int, default=2000, help="number of images (default: 2000)")
    write.add_argument("--image-size", type=_int_at_least(8), default=128, help="image side in pixels (default: 128)")
    write.add_argument(
        "--seed", type=_nonnegative_int, default=0, help="random seed: same seed, same bytes (default: 0)"
    )
    write.add_argument(
        "--test-fraction", type=_fraction, default=0.2, help="share of patients' images in test_list.txt"
    )
    write.add_argument("--no-masks", action="store_true", help="do not write masks/*.npz")
    write.add_argument("--force", action="store_true", help="rewrite even if the folder already holds this set")
    write.set_defaults(func=_data_write)
    gallery = dsub.add_parser("gallery", help="draw a grid of phantoms with masks outlined and labels written")
    gallery.add_argument("--out", required=True, type=Path, help="PNG file to write")
    gallery.add_argument("--n", type=_positive_int, default=12, help="number of phantoms (default: 12)")
    gallery.add_argument("--image-size", type=_int_at_least(8), default=256, help="image side in pixels (default: 256)")
    gallery.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed (default: 0)")
    gallery.add_argument("--cols", type=_positive_int, default=4, help="images per row (default: 4)")
    gallery.set_defaults(func=_data_gallery)
    check = dsub.add_parser("check", help="open a dataset from its folder and describe every split")
    check.add_argument("--source", required=True, help="synthetic | chestxray14 | medmnist | mednist | folder")
    check.add_argument("--root", required=True, type=Path, help="the data folder (e.g. data)")
    check.set_defaults(func=_data_check)
    download = dsub.add_parser("download", help="download MedMNIST (ChestMNIST, PneumoniaMNIST) or MedNIST")
    download.add_argument("dataset", choices=("medmnist", "mednist"), help="which dataset")
    download.add_argument(
        "--root",
        required=True,
        type=Path,
        help="folder to download into (data/downloads is git-ignored and searched by the readers)",
    )
    download.add_argument(
        "--flags", nargs="+", default=None, metavar="FLAG", help="MedMNIST files (default: chestmnist pneumoniamnist)"
    )
    download.add_argument(
        "--size", type=_positive_int, default=None, help="MedMNIST+ size: 28 (default), 64, 128 or 224"
    )
    download.set_defaults(func=_data_download)


def _data_write(args: argparse.Namespace) -> int:
    from meddiff_lab.data.phantom import PHANTOM_VERSION, write_synthetic_cxr

    _check_out_dir(args.out)
    stamp = args.out / "README.txt"
    wanted = f"n={args.n} image_size={args.image_size} seed={args.seed} phantom_version={PHANTOM_VERSION}."
    if (
        not args.force
        and stamp.is_file()
        and wanted in stamp.read_text(errors="replace")
        and (args.out / "Data_Entry_2017.csv").is_file()
    ):
        print(f"{args.out} already holds the synthetic set ({wanted}); nothing to do (--force rewrites it).")
        return 0
    # write into a temporary folder beside --out, then move the files in: a failed write leaves nothing behind
    import shutil
    import tempfile

    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", suffix=".partial", dir=args.out.parent))
    try:
        write_synthetic_cxr(
            staging,
            n=args.n,
            image_size=args.image_size,
            seed=args.seed,
            test_fraction=args.test_fraction,
            with_masks=not args.no_masks,
        )
    except ValueError as exc:
        raise ValueError(
            f"data write --n {args.n} --test-fraction {args.test_fraction}: {exc}; nothing was written"
        ) from None
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        for entry in sorted(staging.iterdir()):
            target = args.out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return 0


def _data_gallery(args: argparse.Namespace) -> int:
    from meddiff_lab.viz.gallery import save_gallery

    _check_out_file(args.out, suffixes=(".png",))
    path = save_gallery(args.out, n=args.n, image_size=args.image_size, seed=args.seed, cols=args.cols)
    print(f"wrote {path}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from meddiff_lab.data.sources import DataCheckError, check_source

    try:
        print(check_source(args.source, args.root, progress=True))
    except DataCheckError as exc:
        print(exc.report)
        print(f"meddiff-lab data check: error: {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from meddiff_lab.data import download

    try:
        if args.dataset == "medmnist":
            paths = download.download_medmnist(
                args.root, flags=args.flags or download.MEDMNIST_DEFAULT_FLAGS, size=args.size
            )
        else:
            paths = [download.download_mednist(args.root)]
    except download.DownloadError as exc:
        print(f"meddiff-lab: error: {exc}", file=sys.stderr)
        return 3
    for p in paths:
        print(f"ready: {p}")
    return 0


# ---------------------------------------------------------------------------------------- metrics
def _add_metrics_commands(sub: argparse._SubParsersAction) -> None:
    metrics = sub.add_parser("metrics", help="train the domain feature encoder; evaluate generated images")
    msub = metrics.add_subparsers(dest="metrics_command", required=True)
    enc = msub.add_parser("train-encoder", help="train the phantom feature encoder (safetensors + JSON card)")
    enc.add_argument("--config", required=True, type=Path, help="YAML config, e.g. configs/phantom_encoder.yaml")
    enc.add_argument("--out", required=True, type=Path, help="output folder (data/pretrained to ship it)")
    enc.add_argument("--steps", type=_positive_int, default=None, help="override the config's number of steps")
    enc.add_argument("--threads", type=_positive_int, default=None, help="override the config's CPU threads")
    enc.set_defaults(func=_metrics_train_encoder)
    ev = msub.add_parser(
        "evaluate", help="FID/KID/precision/recall/diversity (+ memorisation) beside real-vs-real floors"
    )
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--generated", type=Path, help="generated images: .npy/.npz/.pt or a folder of PNGs")
    source.add_argument(
        "--model", help="sample this model instead: a pretrained name (phantom64) or a .safetensors file"
    )
    ev.add_argument(
        "--num-samples",
        "--n",
        dest="num_samples",
        type=_positive_int,
        default=128,
        help="with --model: how many samples per step count, and real images per set (default: 128)",
    )
    ev.add_argument(
        "--steps",
        type=_positive_int,
        nargs="+",
        default=[50],
        help="with --model: DDIM steps, one or more counts (default: 50), e.g. --steps 50 100",
    )
    ev.add_argument(
        "--card",
        type=Path,
        default=None,
        help="with --model: also write the model card's evaluation section (markdown) here",
    )
    ev.add_argument(
        "--real",
        default="synthetic",
        help="held-out real images (at least twice as many as generated): a path, or 'synthetic' for "
        "phantoms of unseen patients (default)",
    )
    ev.add_argument(
        "--train",
        default=None,
        help="the model's training images for the memorisation check: a path, or 'synthetic:N' for the "
        "first N phantoms of seed 0 (what the shipped model trained on)",
    )
    ev.add_argument("--extractor", default="phantom", choices=("phantom", "inception", "radimagenet"))
    ev.add_argument("--seed", type=_nonnegative_int, default=0)
    ev.add_argument("--threads", type=_positive_int, default=None)
    ev.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ev.set_defaults(func=_metrics_evaluate)
    ce = msub.add_parser(
        "evaluate-conditional",
        help="check a conditional zoo model (findings/metadata, mask or edge ControlNet) with "
        "instruments trained on real phantoms, every number beside the real images'",
    )
    ce.add_argument(
        "--model", required=True, help="a conditional model: a pretrained name (phantom64-cond) or a .safetensors file"
    )
    ce.add_argument(
        "--guidance",
        type=_positive_float,
        default=2.0,
        help="classifier-free guidance scale for a findings/metadata model (default: 2)",
    )
    ce.add_argument("--steps", type=_positive_int, default=50, help="DDIM steps (default: 50)")
    ce.add_argument(
        "--n-per-finding",
        type=_positive_int,
        default=50,
        help="samples per finding, conditioned on real images with it (default: 50)",
    )
    ce.add_argument(
        "--n",
        dest="num_samples",
        type=_positive_int,
        default=100,
        help="samples for the CTR check (per arm), sex/view pairs, or ControlNet controls (default: 100)",
    )
    ce.add_argument("--seed", type=_nonnegative_int, default=0)
    ce.add_argument("--threads", type=_positive_int, default=None)
    ce.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ce.add_argument("--card", type=Path, default=None, help="write the model card's section (markdown) here")
    ce.set_defaults(func=_metrics_evaluate_conditional)


def _metrics_train_encoder(args: argparse.Namespace) -> int:
    import shlex

    from meddiff_lab.training.encoder import EncoderConfig, train_encoder

    _check_out_dir(args.out)
    config = EncoderConfig.from_yaml(args.config)
    if args.steps is not None:
        config.steps = args.steps
    if args.threads is not None:
        config.threads = args.threads
    config.validate()
    command = "meddiff-lab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    _, card = train_encoder(config, args.out, command=command)
    ev = card["evaluation"]
    print(
        f"wrote {args.out / 'phantom_encoder.safetensors'} ({card['files']['bytes'] / 1e6:.2f} MB) and its card; "
        f"trained in {card['training']['train_seconds']:.0f} s; held-out label AUROC {ev['label_auroc_mean']:.3f}, "
        f"CTR MAE {ev['ctr_mae']:.3f}, FID real-vs-real {ev['fid_real_vs_real']:.2f}"
    )
    return 0


def _metrics_image_set(spec: str, n: int, image_size: int, seed: int, option: str):
    """'synthetic' / 'synthetic:N' -> phantoms in [-1, 1]; a path -> the file's images mapped to [-1, 1],
    which must have ``image_size`` pixels a side."""
    from meddiff_lab.data.intensity import to_model_batch
    from meddiff_lab.data.phantom import generate_phantoms
    from meddiff_lab.metrics.evaluate import load_image_set

    if spec == "synthetic" or spec.startswith("synthetic:"):
        count = n
        if ":" in spec:
            text = spec.split(":", 1)[1]
            if not text.isdigit() or int(text) < 1:
                raise ValueError(
                    f"{option} {spec!r}: expected 'synthetic' or 'synthetic:N' with N a positive "
                    f"integer (the number of phantoms)"
                )
            count = int(text)
        return to_model_batch(generate_phantoms(count, image_size, seed, masks=()).images)
    images, (low, high) = load_image_set(spec)
    if tuple(images.shape[-2:]) != (image_size, image_size):
        raise ValueError(
            f"{option} {spec} holds {tuple(images.shape[-2:])} px images but the generated images are "
            f"{image_size} x {image_size}; compare sets of the same resolution"
        )
    return (images - low) / (high - low) * 2 - 1


def _metrics_evaluate(args: argparse.Namespace) -> int:
    import json

    import torch

    from meddiff_lab.metrics.evaluate import evaluate_generated, format_results, load_image_set

    if args.out is not None:
        _check_out_file(args.out, suffixes=(".json",))
    if args.card is not None:
        if not args.model:
            raise ValueError("--card needs --model (a model card describes a model, not a folder of images)")
        _check_out_file(args.card, suffixes=(".md",))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        return _evaluate_model(args)
    if args.steps != [50]:
        raise ValueError("--steps applies to --model only (images given with --generated are already sampled)")
    images, (low, high) = load_image_set(args.generated)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"--generated {args.generated} holds {tuple(images.shape[-2:])} px images; expected square images"
        )
    generated = (images - low) / (high - low) * 2 - 1
    size = generated.shape[-1]
    # seed 1: patients the shipped model (trained on seed 0) never saw; beyond the 2 N of the floor,
    # up to 192 more calibrate the copy threshold of the memorisation check
    real = _metrics_image_set(args.real, max(2 * len(generated), len(generated) + 192), size, seed=1, option="--real")
    train = _metrics_image_set(args.train, 0, size, seed=0, option="--train") if args.train else None
    results = evaluate_generated(generated, real, train, extractor=args.extractor, seed=args.seed)
    print(format_results(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _evaluate_model(args: argparse.Namespace) -> int:
    """``metrics evaluate --model``: sample at each step count, then every number beside its floor, the
    noisy-real reference, KID's spread and the readers (metrics.model_evaluation)."""
    import json

    from meddiff_lab.metrics.model_evaluation import evaluate_model, format_model_card

    if args.extractor != "phantom":
        raise ValueError(
            f"--model evaluation uses the phantom domain features; pass --generated to use --extractor {args.extractor}"
        )
    loaded = _load_model(args.model)
    size = int(loaded.config["image_size"])
    n = args.num_samples
    real = _metrics_image_set(args.real, 2 * n + 64, size, seed=1, option="--real")
    train = _metrics_image_set(args.train, 0, size, seed=0, option="--train") if args.train else None
    results = evaluate_model(loaded, n, steps=args.steps, seed=args.seed, train=train, real=real)
    results["model"] = args.model
    card = format_model_card(results)
    print(card)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    if args.card:
        args.card.parent.mkdir(parents=True, exist_ok=True)
        command = (
            f"meddiff-lab metrics evaluate --model {args.model} --n {n} --steps "
            f"{' '.join(map(str, args.steps))} --seed {args.seed} --real {args.real}"
            + (f" --train {args.train}" if args.train else "")
        )
        args.card.write_text(f"<!-- {command} -->\n{card}\n", encoding="utf-8")
        print(f"wrote {args.card}")
    return 0


def _metrics_evaluate_conditional(args: argparse.Namespace) -> int:
    """``metrics evaluate-conditional``: the conditional model card's checks (metrics.conditional_evaluation)."""
    import json

    import torch

    from meddiff_lab.metrics.conditional_evaluation import (
        evaluate_controlnet,
        evaluate_findings_model,
        format_conditional_card,
    )
    from meddiff_lab.training.instruments import build_instruments

    for path, suffix in ((args.out, ".json"), (args.card, ".md")):
        if path is not None:
            _check_out_file(path, suffixes=(suffix,))
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = _load_model(args.model)
    kind = loaded.config.get("conditioning", "none")
    if kind not in ("findings_metadata", "mask", "edges"):
        raise ValueError(
            f"--model {args.model} is not a conditional zoo model (its conditioning is {kind!r}); "
            f"evaluate an unconditional model with `meddiff-lab metrics evaluate`"
        )
    instruments = build_instruments(int(loaded.config["image_size"]), progress=True)
    if kind == "findings_metadata":
        results = evaluate_findings_model(
            loaded,
            instruments,
            guidance=args.guidance,
            steps=args.steps,
            n_per_finding=args.n_per_finding,
            n_ctr=args.num_samples,
            n_pairs=args.num_samples,
            seed=args.seed,
        )
    else:
        results = evaluate_controlnet(loaded, instruments, n=args.num_samples, steps=args.steps, seed=args.seed)
    results["model"] = args.model
    card = format_conditional_card(results)
    print(card)
    command = (
        f"meddiff-lab metrics evaluate-conditional --model {args.model} --steps {args.steps} "
        f"--n {args.num_samples} --seed {args.seed}"
        + (f" --guidance {args.guidance:g} --n-per-finding {args.n_per_finding}" if kind == "findings_metadata" else "")
    )
    results["command"] = command
    for path, text in (
        (args.out, json.dumps(results, indent=2, default=float) + "\n"),
        (args.card, f"<!-- {command} -->\n{card}"),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------------ bench
_BENCH_OPTIONS = (
    "quick",
    "models",
    "sizes",
    "modes",
    "devices",
    "batch",
    "rounds",
    "steps",
    "threads",
    "clock",
    "json",
    "auto_precision",
)


def _add_bench_commands(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: the kit against MONAI and diffusers, measured in one run")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    unet = bsub.add_parser("unet", help="U-Net training and forward throughput (runs benchmarks/unet_throughput.py)")
    unet.add_argument("--quick", action="store_true", help="32 px, training only, 3 rounds of 2 steps")
    unet.add_argument("--models", nargs="+", default=None, help="kit monai diffusers, optionally +cl, +bf16, +nchw")
    unet.add_argument("--sizes", nargs="+", type=int, default=None, help="image sizes (default: 32 64)")
    unet.add_argument("--modes", nargs="+", choices=("train", "forward"), default=None, help="default: both")
    unet.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    unet.add_argument("--batch", type=int, default=None, help="default: 32 at 32 px, 16 at 64 px")
    unet.add_argument("--rounds", type=int, default=None, help="timed rounds per model (default 7, quick 3)")
    unet.add_argument("--steps", type=int, default=None, help="steps per round (default 3, quick 2)")
    unet.add_argument("--threads", type=int, default=None, help="CPU threads (default 2)")
    unet.add_argument(
        "--clock",
        choices=("wall", "process"),
        default=None,
        help="wall (default) or process (CPU time; robust on a shared machine with --threads 1)",
    )
    unet.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    unet.add_argument(
        "--auto-precision",
        action="store_true",
        help="also print what mixed_precision: auto measures (bf16 speed-up over float32)",
    )
    unet.set_defaults(func=_bench_unet)


def _bench_unet(args: argparse.Namespace) -> int:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "unet_throughput.py"
    if not script.is_file():
        script = Path.cwd() / "benchmarks" / "unet_throughput.py"
    if not script.is_file():
        raise FileNotFoundError(
            "benchmarks/unet_throughput.py was not found next to the package or in the "
            "current folder; run `meddiff-lab bench unet` from a source checkout"
        )
    spec = importlib.util.spec_from_file_location("unet_throughput", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    argv: list[str] = []
    for name in _BENCH_OPTIONS:
        value = getattr(args, name)
        if value is None or value is False:
            continue
        argv.append(f"--{name.replace('_', '-')}")
        if value is not True:
            argv += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return module.main(argv)


# ------------------------------------------------------------------------------------- experiment
def _add_experiment_commands(sub: argparse._SubParsersAction) -> None:
    experiment = sub.add_parser("experiment", help="run an experiment grid and write results.json + results.md")
    esub = experiment.add_subparsers(dest="experiment_command", required=True)
    seg = esub.add_parser(
        "seg-augmentation",
        help="notebook 07's grid: segmentation with few labels, augmented by "
        "the edge ControlNet, against classical, pseudo-labels, more labels",
    )
    seg.add_argument(
        "--profile",
        default="ci",
        help="ci (about a minute on one CPU thread), classroom, notebook-full, or "
        "full (hours on a CPU, minutes on a GPU with --workers)",
    )
    seg.add_argument("--out", required=True, type=Path, help="output folder (results.json, results.md)")
    seg.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads (default: PyTorch's); $MEDDIFF_DEVICE picks the device (default: cuda if present)",
    )
    seg.add_argument(
        "--segmenter-steps",
        type=_int_at_least(2),
        default=None,
        help="override the profile's steps of every arm (to check them on the validation scores)",
    )
    seg.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes sharing the grid (one CPU thread each, one shared device), e.g. 12 on a GPU machine",
    )
    seg.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="start no new (n, draw, seed) group after this many seconds; rerun with the same --out to resume",
    )
    seg.add_argument(
        "--extra-arm",
        default=None,
        metavar="ARM",
        help="instead of the grid, add this arm to the grid already in --out, on its own (n, draw, seed) groups "
        "(e.g. '+ unwarped synthetic + classical'); rerun to resume",
    )
    seg.add_argument(
        "--sizes",
        nargs="+",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --extra-arm: the labelled-set sizes to run it at (default: all of the profile's)",
    )
    seg.set_defaults(func=_experiment_seg_augmentation)
    lat = esub.add_parser(
        "latent-comparison",
        help="notebook 10's table: pixel vs latent, ε/v vs rectified flow at "
        "equal training FLOPs, FID/KID/precision/recall and steps to a KID",
    )
    lat.add_argument("--profile", default="ci", help="ci (seconds) or full (128 px, N = 500: minutes on a GPU)")
    lat.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder (results.json, results.md, arms/); rerun the same command to resume by arm",
    )
    lat.add_argument(
        "--arms",
        nargs="+",
        default=None,
        metavar="ARM",
        help="run only these arms (names as in results.md, e.g. 'pixel ε'); finished arms are read back",
    )
    lat.add_argument(
        "--autoencoder",
        default="phantom128-ldm",
        help="a shipped latent model's name or .safetensors (its autoencoder is used), or a config run's "
        "autoencoder.pt (default: phantom128-ldm)",
    )
    lat.add_argument("--threads", type=_positive_int, default=None)
    lat.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="a safety cap on each arm's training seconds (an arm it stops is marked capped: less compute)",
    )
    lat.add_argument(
        "--mixed-precision",
        choices=("no", "bf16"),
        default="no",
        help="bf16 autocast for training and sampling (about twice as fast on CPUs with AMX; default: no)",
    )
    lat.set_defaults(func=_experiment_latent_comparison)
    rec = esub.add_parser(
        "recipes",
        help="the zoo's training recipe: ε vs v, min-SNR, schedule, learning rate, batch "
        "at a fixed number of training images, FID/KID beside the floor and seed spread",
    )
    rec.add_argument(
        "--profile",
        default="ci",
        help="ci (seconds), cpu (32 px, about 10 minutes an arm on one core) or gpu (64 px at the zoo's batch)",
    )
    rec.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder (results.json, results.md, arms/); rerun the same command to resume",
    )
    rec.add_argument(
        "--arms",
        nargs="+",
        default=None,
        metavar="ARM",
        help="run only these arms (names as in results.md), e.g. to share the grid between processes",
    )
    rec.add_argument("--threads", type=_positive_int, default=1, help="CPU threads per process (default: 1)")
    rec.set_defaults(func=_experiment_recipes)


def _experiment_seg_augmentation(args: argparse.Namespace) -> int:
    import dataclasses

    from meddiff_lab.experiments.segmentation_augmentation import (
        get_seg_augmentation_profile,
        run_extra_arm,
        run_seg_augmentation,
        write_seg_augmentation_results,
    )
    from meddiff_lab.runtime import get_device, set_threads

    profile = get_seg_augmentation_profile(args.profile)
    if args.segmenter_steps is not None:
        profile = dataclasses.replace(profile, segmenter_steps=args.segmenter_steps)
    _check_out_dir(args.out)
    set_threads(args.threads)
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise ValueError(f"--max-seconds must be positive, got {args.max_seconds}")
    if args.sizes is not None and args.extra_arm is None:
        raise ValueError("--sizes only goes with --extra-arm (the grid runs every size of its profile)")
    if args.extra_arm is not None:
        results = run_extra_arm(
            profile,
            args.extra_arm,
            args.out,
            sizes=None if args.sizes is None else tuple(args.sizes),
            device=get_device(),
            max_seconds=args.max_seconds,
        )
    else:
        results = run_seg_augmentation(
            profile, device=get_device(), out=args.out, workers=args.workers, max_seconds=args.max_seconds
        )
    results["command"] = " ".join(
        ["meddiff-lab experiment seg-augmentation", f"--profile {args.profile}"]
        + ([f"--extra-arm '{args.extra_arm}'"] if args.extra_arm else [])
        + ([f"--sizes {' '.join(map(str, args.sizes))}"] if args.sizes else [])
        + ([f"--segmenter-steps {args.segmenter_steps}"] if args.segmenter_steps else [])
        + ([f"--threads {args.threads}"] if args.threads else [])
        + ([f"--workers {args.workers}"] if args.workers > 1 else [])
        + ([f"--max-seconds {args.max_seconds:g}"] if args.max_seconds else [])
    )
    for path in write_seg_augmentation_results(results, args.out):
        print(f"wrote {path}")
    return 0


def _experiment_latent_comparison(args: argparse.Namespace) -> int:
    from meddiff_lab.experiments.latent_comparison import (
        get_latent_comparison_profile,
        run_latent_comparison,
        write_latent_comparison_results,
    )
    from meddiff_lab.runtime import get_device, set_threads

    profile = get_latent_comparison_profile(args.profile)
    _check_out_dir(args.out)
    set_threads(args.threads)
    if str(args.autoencoder).endswith(".pt"):
        from meddiff_lab.training.latent import load_trained_autoencoder

        if not Path(args.autoencoder).is_file():
            raise FileNotFoundError(f"--autoencoder {args.autoencoder} does not exist")
        autoencoder = load_trained_autoencoder(args.autoencoder)
    else:
        from meddiff_lab.models import load_pretrained

        autoencoder = load_pretrained(args.autoencoder).autoencoder
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise ValueError(f"--max-seconds must be positive, got {args.max_seconds}")
    results = run_latent_comparison(
        profile,
        autoencoder,
        device=get_device(),
        out=args.out,
        arms=args.arms,
        max_seconds=args.max_seconds,
        mixed_precision=args.mixed_precision,
    )
    results["command"] = " ".join(
        [f"meddiff-lab experiment latent-comparison --profile {args.profile} --autoencoder {args.autoencoder}"]
        + ([f"--max-seconds {args.max_seconds:g}"] if args.max_seconds else [])
        + ([f"--mixed-precision {args.mixed_precision}"] if args.mixed_precision != "no" else [])
    )
    for path in write_latent_comparison_results(results, args.out):
        print(f"wrote {path}")
    if results["missing"]:
        print(f"not run yet: {', '.join(results['missing'])}; rerun with the same --out to add them")
    return 0


def _experiment_recipes(args: argparse.Namespace) -> int:
    from meddiff_lab.experiments.recipe_comparison import (
        get_recipe_profile,
        run_recipe_comparison,
        write_recipe_results,
    )

    profile = get_recipe_profile(args.profile)
    _check_out_dir(args.out)
    results = run_recipe_comparison(profile, args.out, arms=args.arms, threads=args.threads, progress=False)
    results["command"] = f"meddiff-lab experiment recipes --profile {args.profile} --out {args.out}"
    for path in write_recipe_results(results, args.out):
        print(f"wrote {path}")
    if results["missing"]:
        print(f"not run yet: {', '.join(results['missing'])}")
    return 0


# ------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="meddiff-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_course_commands(sub)
    for name in (
        "_add_data_commands",
        "_add_train_commands",
        "_add_bench_commands",
        "_add_metrics_commands",
        "_add_experiment_commands",
    ):
        adder = globals().get(name)
        if adder is not None:
            adder(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user-caused failure prints one line and returns 2 (see the module doc)."""
    args = build_parser().parse_args(argv)
    command = " ".join(
        str(getattr(args, key)) for key in ("command", f"{args.command}_command") if getattr(args, key, None)
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"meddiff-lab {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _user_error_message(exc)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"meddiff-lab {command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
