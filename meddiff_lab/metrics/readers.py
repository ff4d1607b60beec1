"""Readers for a real-or-synthetic study: can anything tell the samples from real images?

A reader study asks the question a clinician asks: shown one image, is it real or generated? A
reader that answers at chance (50 %) could not tell; one well above chance could, whatever FID says.
A study is only as good as its readers, so this module has readers that *can* tell when there is
something to tell:

- ``air_corner_std``: the standard deviation of the darkest corner of the image, the air outside
  the body. A sampler that leaves residual noise there gives itself away.
- ``high_pass_energy``: the mean squared response of a Laplacian filter: noise and missing fine
  structure both change it.
- ``classifier_two_sample_test``: a small CNN trained to tell real from generated images on one
  half of each set, scored on the other half (the classifier two-sample test of Lopez-Paz and
  Oquab, 2017). It finds tells nobody thought of.

Each reader is fitted on a training half and scored on held-out images it never saw, so its
accuracy is an honest estimate; :func:`wilson_interval` gives its 95 % interval. Accuracy whose
interval lies above 50 % means the samples are distinguishable; an interval that includes 50 %
means *this* reader could not tell at this number of questions, not that nobody can.

    study = reader_study(real_images, generated_images, seed=0)
    for result in study.values():
        print(result)      # "air-corner std: 64 of 64 correct (100 %; 95 % interval 94-100 %), AUC 1.00"
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from meddiff_lab.metrics._inputs import image_batch


@dataclass(frozen=True)
class ReaderResult:
    """One reader's score on held-out questions (half real, half generated images).

    ``accuracy`` is ``correct / questions``; ``interval`` its 95 % Wilson interval; ``auc`` the
    area under the ROC curve of the reader's score on the held-out images (0.5: no signal).
    """

    name: str
    correct: int
    questions: int
    accuracy: float
    interval: tuple[float, float]
    auc: float

    @property
    def distinguishable(self) -> bool:
        """True when the whole 95 % interval lies above chance (50 %)."""
        return self.interval[0] > 0.5

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        low, high = self.interval
        return (
            f"{self.name}: {self.correct} of {self.questions} correct ({100 * self.accuracy:.0f} %; "
            f"95 % interval {100 * low:.0f}-{100 * high:.0f} %), AUC {self.auc:.2f}"
        )


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``correct / total`` (two-sided, ``confidence``).

    Better behaved than the normal approximation near 0 and 1 (it never leaves [0, 1] and is not
    empty at 0 or ``total`` correct).
    """
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"wilson_interval needs 0 <= correct <= total and total > 0, got {correct} of {total}")
    z = _normal_quantile(0.5 + confidence / 2)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _normal_quantile(q: float) -> float:
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(q, dtype=torch.float64)))


def roc_auc(real_scores, generated_scores) -> float:
    """Probability that a generated image scores higher than a real one (ties count half): the ROC AUC."""
    real = np.asarray(real_scores, dtype=np.float64).ravel()
    generated = np.asarray(generated_scores, dtype=np.float64).ravel()
    if len(real) == 0 or len(generated) == 0:
        raise ValueError("roc_auc needs at least one real and one generated score")
    greater = (generated[:, None] > real[None, :]).sum()
    ties = (generated[:, None] == real[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(real) * len(generated)))


# ------------------------------------------------------------------------------------ trivial readers
def air_corner_std(images, corner: int | None = None) -> torch.Tensor:
    """Standard deviation of the darkest of the four ``corner x corner`` corners of each image.

    Args:
        images: ``(N, 1, H, W)`` or ``(N, H, W)``, any value range.
        corner: side of the corner patch in pixels (default ``max(4, H // 10)``).

    Returns:
        ``(N,)`` float32: the std of the corner with the lowest mean (the air outside the body).
    """
    x = image_batch(images, "images")[:, 0]
    side = corner or max(4, x.shape[-2] // 10)
    patches = torch.stack([x[:, :side, :side], x[:, :side, -side:], x[:, -side:, :side], x[:, -side:, -side:]], 1)
    patches = patches.flatten(2)  # (N, 4, side * side)
    darkest = patches.mean(-1).argmin(1)
    return patches.std(-1)[torch.arange(len(x)), darkest]


def high_pass_energy(images) -> torch.Tensor:
    """Mean squared Laplacian response of each image (its high-frequency energy).

    Args:
        images: ``(N, 1, H, W)`` or ``(N, H, W)``.

    Returns:
        ``(N,)`` float32. Noise raises it; blur and missing fine structure lower it.
    """
    x = image_batch(images, "images")[:, :1]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    return F.conv2d(x, kernel).pow(2).mean(dim=(1, 2, 3))


def threshold_reader(
    name: str, score: Callable[[Any], torch.Tensor], real_train, generated_train, real_test, generated_test
) -> ReaderResult:
    """A one-number reader: fit a threshold (and its direction) on the training halves, score the test halves.

    The threshold is the midpoint between two neighbouring training scores that classifies the most
    training images correctly; the held-out images then answer "generated" on its side.
    """
    train_real, train_gen = score(real_train).double().numpy(), score(generated_train).double().numpy()
    values = np.sort(np.concatenate([train_real, train_gen]))
    candidates = np.concatenate([[values[0] - 1], (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
    best = (-1.0, 0.0, 1)
    for threshold in candidates:
        for sign in (1, -1):  # sign 1: generated scores higher
            right = (sign * train_gen > sign * threshold).sum() + (sign * train_real <= sign * threshold).sum()
            if right > best[0]:
                best = (float(right), float(threshold), sign)
    _, threshold, sign = best
    test_real, test_gen = score(real_test).double().numpy(), score(generated_test).double().numpy()
    correct = int((sign * test_gen > sign * threshold).sum() + (sign * test_real <= sign * threshold).sum())
    return _result(name, correct, len(test_real) + len(test_gen), roc_auc(sign * test_real, sign * test_gen))


# ------------------------------------------------------------------------------ the trained reader
class _SmallCNN(torch.nn.Module):
    """Three stride-2 convolutions, mean and max pooling, a linear read-out: small and fast (a few
    seconds of CPU for 200 steps at 64 px), yet enough to find texture and noise tells."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, 3, stride=2, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            torch.nn.SiLU(),
        )
        self.head = torch.nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))[:, 0]


def classifier_two_sample_test(
    real_train,
    generated_train,
    real_test,
    generated_test,
    *,
    steps: int = 200,
    batch_size: int = 32,
    seed: int = 0,
    name: str = "trained classifier",
) -> ReaderResult:
    """Train a small CNN to tell generated from real on the training halves; score it on the test halves.

    Args:
        real_train, generated_train, real_test, generated_test: ``(N, 1, H, W)`` images, same value range.
        steps: Adam steps (learning rate 2e-3) on balanced batches; the only augmentation is a random
            shift of up to 2 px (no flips: anatomy has a side).
        seed: seeds the network's initialisation and the batches.

    Returns:
        The held-out :class:`ReaderResult` of the classifier's logit, thresholded where it best
        separates the training halves (a classifier that learned nothing scores about 50 %).
    """
    tensors = [
        image_batch(x, n)[:, :1]
        for x, n in (
            (real_train, "real_train"),
            (generated_train, "generated_train"),
            (real_test, "real_test"),
            (generated_test, "generated_test"),
        )
    ]
    r_train, g_train, r_test, g_test = tensors
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = _SmallCNN()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    half = max(1, batch_size // 2)
    net.train()
    for _ in range(steps):
        ri = torch.randint(len(r_train), (half,), generator=generator)
        gi = torch.randint(len(g_train), (half,), generator=generator)
        x = torch.cat([r_train[ri], g_train[gi]])
        dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        target = torch.cat([torch.zeros(half), torch.ones(half)])
        loss = F.binary_cross_entropy_with_logits(net(x), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()

    def logit(images) -> torch.Tensor:
        with torch.no_grad():
            return net(images)

    # the logit's threshold is fitted on the training halves like the one-number readers' (0 is not
    # always where a briefly trained network separates the classes)
    return threshold_reader(name, logit, r_train, g_train, r_test, g_test)


def _result(name: str, correct: int, questions: int, auc: float) -> ReaderResult:
    return ReaderResult(
        name=name,
        correct=correct,
        questions=questions,
        accuracy=correct / questions,
        interval=wilson_interval(correct, questions),
        auc=auc,
    )


# ---------------------------------------------------------------------------------------- the study
def split_halves(images, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random half of ``images`` to fit a reader on, and the other half to test it on."""
    x = image_batch(images, "images")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[order[: len(x) // 2]], x[order[len(x) // 2 :]]


def reader_study(real, generated, *, seed: int = 0, classifier_steps: int = 200) -> dict[str, ReaderResult]:
    """Score the three readers on held-out halves of ``real`` and ``generated`` images.

    Args:
        real, generated: ``(N, 1, H, W)`` images in the same value range (for example [-1, 1]).
            Each set is split in two random halves: one to fit the readers, one to ask the questions
            (the held-out halves together; 40 questions give a 95 % interval about ±15 % wide at 50 %).
        seed: decides the halves and the classifier's training.
        classifier_steps: training steps of the classifier two-sample test.

    Returns:
        ``{"air-corner std": ..., "high-pass energy": ..., "trained classifier": ...}`` of
        :class:`ReaderResult`, each scored on the same held-out questions.
    """
    real_fit, real_test = split_halves(real, seed)
    generated_fit, generated_test = split_halves(generated, seed + 1)
    if min(len(real_fit), len(real_test), len(generated_fit), len(generated_test)) < 2:
        raise ValueError(
            f"reader_study needs at least 4 real and 4 generated images, got {len(real_fit) + len(real_test)}"
            f" and {len(generated_fit) + len(generated_test)}"
        )
    halves = (real_fit, generated_fit, real_test, generated_test)
    return {
        "air-corner std": threshold_reader("air-corner std", air_corner_std, *halves),
        "high-pass energy": threshold_reader("high-pass energy", high_pass_energy, *halves),
        "trained classifier": classifier_two_sample_test(*halves, steps=classifier_steps, seed=seed),
    }


def describe_study(study: dict[str, ReaderResult]) -> str:
    """One plain sentence on how distinguishable the samples are, generated from the readers' numbers."""
    best = max(study.values(), key=lambda r: (r.interval[0], r.accuracy))
    low, high = best.interval
    score = (
        f"{best.name} reader: {best.correct} of {best.questions} held-out images right, "
        f"{100 * best.accuracy:.0f} % (95 % interval {100 * low:.0f}-{100 * high:.0f} %)"
    )
    if not best.distinguishable:
        return (
            f"No reader told the samples from real images better than chance at this number of questions "
            f"(best, the {score}); that is no proof that nobody can."
        )
    how = "easily" if best.accuracy >= 0.9 else "clearly" if low > 0.6 else "slightly"
    return f"The samples are {how} distinguishable from real images: the {score}."


__all__ = [
    "ReaderResult",
    "wilson_interval",
    "roc_auc",
    "air_corner_std",
    "high_pass_energy",
    "threshold_reader",
    "classifier_two_sample_test",
    "split_halves",
    "reader_study",
    "describe_study",
]
