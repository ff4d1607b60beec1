"""meddiff_lab/training/trainer.py: in a notebook the trainer's progress messages go to stdout, not stderr
(JupyterLab shows stderr in red boxes that read as errors)."""

from __future__ import annotations

import sys
import types

import torch
from tiny_runs import tiny_run_config

from meddiff_lab.training import TrainConfig, Trainer

TINY = tiny_run_config(num_images=16, learning_rate=2e-3, ema_decay=0.9)


def _train(tmp_path, **kwargs):
    images = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return Trainer(TrainConfig.from_dict(TINY), tmp_path, images=images, progress=True).train(**kwargs)


def test_in_a_notebook_progress_messages_go_to_stdout(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    _train(tmp_path)
    _train(tmp_path, max_steps=3, resume=True)
    out, err = capsys.readouterr()
    assert "trained to step 2" in out and "resumed from" in out and "trained to step 3" in out
    assert "trained to step" not in err and "resumed from" not in err


def test_in_a_terminal_they_stay_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    _train(tmp_path)
    out, err = capsys.readouterr()
    assert "trained to step 2" in err and "trained to step" not in out
