"""A blinded real-or-synthetic quiz: a reader study in miniature, for a class.

Metrics such as FID summarise features; the question a radiologist asks is simpler: *can I tell?*
A reader study shows readers a shuffled mix of real and generated images, one at a time, without
saying which is which, and scores their answers. Accuracy near 50 % (chance) means the readers
could not tell; well above means they could, and what gave it away is worth discussing.

    quiz = RealOrSyntheticQuiz(real_images, synthetic_images, num_questions=10, seed=0)
    quiz.widget()                 # in Jupyter: one image at a time, "Real" / "Synthetic" buttons, then the verdict
    quiz.answer(0, "synthetic")   # or drive it from Python
    quiz.score()                  # accuracy, and how often real and synthetic images were recognised

The order, and which images are shown, depend only on ``seed``, so a whole class sees the same quiz.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

CHOICES = ("real", "synthetic")


@dataclass(frozen=True)
class QuizScore:
    """The result of a quiz: ``accuracy`` over answered questions, and per class how often it was recognised."""

    answered: int
    correct: int
    accuracy: float
    real_recognised: float  # share of real images answered "real" (NaN when none was answered)
    synthetic_recognised: float  # share of synthetic images answered "synthetic"
    chance: float = 0.5

    def __str__(self) -> str:
        return (
            f"{self.correct} of {self.answered} correct ({100 * self.accuracy:.0f} %; chance is "
            f"{100 * self.chance:.0f} %); real images recognised {_pct(self.real_recognised)}, "
            f"synthetic images recognised {_pct(self.synthetic_recognised)}"
        )


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.0f} %"


def _as_images(images: Any, name: str) -> np.ndarray:
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"{name} must be grey images (N, H, W) or (N, 1, H, W), got shape {array.shape}")
    return array


class RealOrSyntheticQuiz:
    """A blinded, shuffled set of real and synthetic images with an answer sheet.

    Args:
        real_images, synthetic_images: ``(N, H, W)`` or ``(N, 1, H, W)`` arrays or tensors, same value range.
        num_questions: how many images to show (half real, half synthetic, rounded down for real).
        seed: decides which images are drawn and their order.
        value_range: (min, max) of the images for display.
    """

    def __init__(
        self,
        real_images,
        synthetic_images,
        num_questions: int = 10,
        seed: int = 0,
        value_range: tuple[float, float] = (-1.0, 1.0),
    ):
        real, synthetic = _as_images(real_images, "real_images"), _as_images(synthetic_images, "synthetic_images")
        if real.shape[1:] != synthetic.shape[1:]:
            raise ValueError(
                f"real and synthetic images must have the same size, got {real.shape[1:]} and {synthetic.shape[1:]}"
            )
        n_real, n_synthetic = num_questions // 2, num_questions - num_questions // 2
        if num_questions < 2 or n_real > len(real) or n_synthetic > len(synthetic):
            raise ValueError(
                f"num_questions={num_questions} needs at least 2 questions, {n_real} real and "
                f"{n_synthetic} synthetic images; got {len(real)} and {len(synthetic)}"
            )
        rng = np.random.default_rng(seed)
        chosen_real = rng.choice(len(real), n_real, replace=False)
        chosen_synthetic = rng.choice(len(synthetic), n_synthetic, replace=False)
        images = np.concatenate([real[chosen_real], synthetic[chosen_synthetic]])
        truth = np.array(["real"] * n_real + ["synthetic"] * n_synthetic)
        order = rng.permutation(num_questions)
        self.images = images[order]
        self._truth = truth[order]
        self.source_index = np.concatenate([chosen_real, chosen_synthetic])[order]
        self.value_range = value_range
        self.answers: list[str | None] = [None] * num_questions

    def __len__(self) -> int:
        return len(self.images)

    @property
    def truth(self) -> np.ndarray:
        """The answer key ("real"/"synthetic" per question). Reveal it only after the quiz."""
        return self._truth.copy()

    def answer(self, question: int, choice: str) -> bool:
        """Record the answer to ``question`` (0-based); returns whether it was right."""
        if not 0 <= question < len(self):
            raise IndexError(f"question must be in 0..{len(self) - 1}, got {question}")
        choice = str(choice).lower()
        if choice not in CHOICES:
            raise ValueError(f"choice must be 'real' or 'synthetic', got {choice!r}")
        self.answers[question] = choice
        return choice == self._truth[question]

    def answer_all(self, choices) -> QuizScore:
        """Answer every question in order (a list of "real"/"synthetic"); returns :meth:`score`."""
        choices = list(choices)
        if len(choices) != len(self):
            raise ValueError(f"expected {len(self)} answers, got {len(choices)}")
        for i, choice in enumerate(choices):
            self.answer(i, choice)
        return self.score()

    def reset(self) -> None:
        self.answers = [None] * len(self)

    def score(self) -> QuizScore:
        """Score the answers given so far (unanswered questions are left out)."""
        answered = np.array([a is not None for a in self.answers])
        given = np.array([a if a is not None else "" for a in self.answers])
        right = answered & (given == self._truth)

        def recognised(kind: str) -> float:
            mask = answered & (self._truth == kind)
            return float(right[mask].mean()) if mask.any() else float("nan")

        n = int(answered.sum())
        return QuizScore(
            answered=n,
            correct=int(right.sum()),
            accuracy=float(right.sum() / n) if n else float("nan"),
            real_recognised=recognised("real"),
            synthetic_recognised=recognised("synthetic"),
        )

    # ------------------------------------------------------------------------------------ the widget
    def _png(self, question: int, scale: int = 4) -> bytes:
        from PIL import Image

        low, high = self.value_range
        grey = np.clip((self.images[question] - low) / (high - low), 0, 1)
        image = Image.fromarray((grey * 255).round().astype(np.uint8))
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def feedback(self, question: int) -> str:
        """One line on the answer given to ``question``: right or wrong, what the image was, the tally so far."""
        given = self.answers[question]
        if given is None:
            return f"Image {question + 1}: not answered yet."
        truth = self._truth[question]
        verdict = "right" if given == truth else "wrong"
        so_far = self.score()
        return (
            f"Image {question + 1}: you said {given}; {verdict}, it was {truth}. "
            f"So far {so_far.correct} of {so_far.answered} right."
        )

    def widget(self, feedback: bool = True):
        """An ipywidgets quiz: one image at a time, "Real" / "Synthetic" buttons, the score at the end.

        Args:
            feedback: after each answer, say whether it was right and what the image was (a teaching
                quiz). ``False`` keeps the readers blind until the end (a reader study).

        Returns the widget (a VBox); its ``buttons`` attribute maps "real"/"synthetic" to the buttons,
        so ``quiz_widget.buttons["real"].click()`` answers the current question from code; ``status``
        and ``feedback`` are the HTML lines above the image.
        """
        import ipywidgets as widgets

        state = {"question": next((i for i, a in enumerate(self.answers) if a is None), len(self))}
        image = widgets.Image(format="png", width=256, height=256)
        status = widgets.HTML()
        verdict = widgets.HTML()
        buttons = {
            choice: widgets.Button(description=choice.capitalize(), button_style=style)
            for choice, style in zip(CHOICES, ("info", "warning"))
        }
        restart = widgets.Button(description="Start again")

        def show() -> None:
            q = state["question"]
            done = q >= len(self)
            for b in buttons.values():
                b.disabled = done
            if done:
                key = " ".join(f"{i + 1}:{'R' if t == 'real' else 'S'}" for i, t in enumerate(self._truth))
                status.value = f"<b>Finished.</b> {self.score()}<br>Answer key: {key}"
            else:
                image.value = self._png(q)
                status.value = f"Image {q + 1} of {len(self)}: real radiograph or synthetic?"

        def on_click(choice: str):
            def handler(_button) -> None:
                if state["question"] < len(self):
                    right = self.answer(state["question"], choice)
                    if feedback:
                        colour = "green" if right else "#b00"
                        verdict.value = f'<span style="color:{colour}">{self.feedback(state["question"])}</span>'
                    state["question"] += 1
                    show()

            return handler

        def on_restart(_button) -> None:
            self.reset()
            state["question"] = 0
            verdict.value = ""
            show()

        for choice, button in buttons.items():
            button.on_click(on_click(choice))
        restart.on_click(on_restart)
        show()
        box = widgets.VBox([verdict, status, image, widgets.HBox([*buttons.values(), restart])])
        box.buttons = buttons
        box.status = status
        box.feedback = verdict
        return box


__all__ = ["RealOrSyntheticQuiz", "QuizScore", "CHOICES"]
