"""`meddiff-lab train` killed with SIGKILL mid-run, then `--resume`: continues from the last checkpoint."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from meddiff_lab.training import load_checkpoint

CONFIG = """
data: {image_size: 16, num_images: 16}
model: {channels: [8, 16], attention_levels: [false, false], num_head_channels: 8, norm_num_groups: 8}
optim: {max_steps: 100000, batch_size: 4, learning_rate: 0.001, warmup_steps: 2, mixed_precision: "no"}
run: {threads: 1, log_every: 1, sample_every: 0, checkpoint_every: 3}
"""


def _cli(*args):
    return [sys.executable, "-m", "meddiff_lab.cli", "train", *args]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_then_resume_continues_from_last_checkpoint_and_ends_at_max_steps(tmp_path):
    config, out = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        _cli("--config", str(config), "--out", str(out)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # wait for the second checkpoint (step 6), then kill mid-run
            if (out / "last.pt").exists() and load_checkpoint(out / "last.pt")["step"] >= 6:
                break
            assert process.poll() is None, "training exited before it was killed"
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint at step >= 6 within 240 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(out / "last.pt")["step"]
    assert killed_at % 3 == 0 and killed_at >= 6

    max_steps = killed_at + 4
    resumed = subprocess.run(
        _cli("--config", str(config), "--out", str(out), "--resume", "--max-steps", str(max_steps)),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {killed_at}" in resumed.stderr
    assert load_checkpoint(out / "last.pt")["step"] == max_steps
    with open(out / "log.csv", newline="") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == list(range(1, max_steps + 1))
