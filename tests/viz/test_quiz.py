"""Tests for meddiff_lab/viz/quiz.py: the blinded real-or-synthetic quiz scores answers correctly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meddiff_lab.viz.quiz import RealOrSyntheticQuiz


def _quiz(num_questions: int = 10, seed: int = 0) -> RealOrSyntheticQuiz:
    rng = np.random.default_rng(1)
    real = rng.random((12, 8, 8)) * 0.5 - 1.0  # real images in [-1, -0.5]
    synthetic = rng.random((12, 1, 8, 8)) * 0.5 + 0.5  # synthetic images in [0.5, 1]
    return RealOrSyntheticQuiz(real, synthetic, num_questions=num_questions, seed=seed)


def test_quiz_is_blinded_balanced_and_reproducible():
    quiz = _quiz()
    assert len(quiz) == 10 and sorted(quiz.truth.tolist()).count("real") == 5
    # the shown image matches its hidden label (real images are all negative here)
    assert ((quiz.images.mean(axis=(1, 2)) < 0) == (quiz.truth == "real")).all()
    assert quiz.truth.tolist() == _quiz().truth.tolist()
    assert quiz.truth.tolist() != _quiz(seed=5).truth.tolist()


def test_a_perfect_reader_an_always_real_reader_and_a_contrarian_score_as_expected():
    quiz = _quiz()
    perfect = quiz.answer_all(quiz.truth)
    assert perfect.accuracy == 1.0 and perfect.real_recognised == 1.0 and perfect.synthetic_recognised == 1.0
    always_real = quiz.answer_all(["real"] * len(quiz))
    assert (
        always_real.accuracy == 0.5 and always_real.real_recognised == 1.0 and always_real.synthetic_recognised == 0.0
    )
    contrarian = quiz.answer_all(["synthetic" if t == "real" else "real" for t in quiz.truth])
    assert contrarian.correct == 0 and contrarian.accuracy == 0.0


def test_partial_answers_are_scored_on_what_was_answered():
    quiz = _quiz()
    first_real = int(np.flatnonzero(quiz.truth == "real")[0])
    assert quiz.answer(first_real, "Real") is True
    score = quiz.score()
    assert score.answered == 1 and score.correct == 1 and math.isnan(score.synthetic_recognised)
    assert "1 of 1 correct" in str(score)


def test_bad_answers_and_sizes_are_rejected():
    quiz = _quiz()
    with pytest.raises(ValueError, match="'real' or 'synthetic'"):
        quiz.answer(0, "fake")
    with pytest.raises(IndexError):
        quiz.answer(10, "real")
    with pytest.raises(ValueError, match="needs at least"):
        RealOrSyntheticQuiz(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), num_questions=10)
    with pytest.raises(ValueError, match="same size"):
        RealOrSyntheticQuiz(np.zeros((6, 8, 8)), np.zeros((6, 9, 9)), num_questions=4)


def test_the_widget_scores_button_clicks():
    quiz = _quiz(num_questions=4)
    box = quiz.widget()
    for truth in quiz.truth:
        box.buttons[truth].click()  # a reader who is always right
    score = quiz.score()
    assert score.answered == 4 and score.accuracy == 1.0
    assert "Finished" in box.status.value and box.buttons["real"].disabled


def test_the_widget_says_after_each_answer_whether_it_was_right():
    quiz = _quiz(num_questions=4)
    box = quiz.widget()
    assert box.feedback.value == ""
    first, second = quiz.truth[0], quiz.truth[1]
    box.buttons[first].click()
    assert f"Image 1: you said {first}; right, it was {first}." in box.feedback.value
    assert "So far 1 of 1 right" in box.feedback.value
    wrong = "real" if second == "synthetic" else "synthetic"
    box.buttons[wrong].click()
    assert f"Image 2: you said {wrong}; wrong, it was {second}." in box.feedback.value
    assert "So far 1 of 2 right" in box.feedback.value
    assert "Image 3 of 4" in box.status.value


def test_a_blind_widget_gives_no_feedback_until_the_end():
    quiz = _quiz(num_questions=4)
    box = quiz.widget(feedback=False)
    box.buttons["real"].click()
    assert box.feedback.value == ""
