"""Two CPU processes (gloo, through Accelerate): both ranks hold identical weights after training steps."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_runs import tiny_run_config

from meddiff_lab.training import TrainConfig, Trainer

TINY = tiny_run_config(num_images=16, learning_rate=1e-2)


def _train_on_each_rank(result_folder: str) -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # a forked child must not reuse the parent's single-process state
    accelerator = Accelerator(cpu=True)
    images = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainer = Trainer(TrainConfig.from_dict(TINY), images=images, progress=False, accelerator=accelerator)
    initial = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    first_batch = trainer._next_batch()[0].sum().item()
    trainer.train()
    weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    gathered = accelerator.gather(weights[None])
    with open(f"{result_folder}/rank{accelerator.process_index}.json", "w") as handle:
        json.dump(
            {
                "world_size": accelerator.num_processes,
                "steps": trainer.step,
                "changed": bool((weights - initial).abs().max() > 0),
                "ranks_identical": bool(torch.equal(gathered[0], gathered[1])),
                "first_batch": first_batch,
            },
            handle,
        )


@pytest.mark.slow
def test_two_cpu_processes_hold_identical_weights_after_a_step(tmp_path):
    from accelerate import debug_launcher

    debug_launcher(_train_on_each_rank, args=(str(tmp_path),), num_processes=2)
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for result in results:
        assert result["world_size"] == 2 and result["steps"] == 2
        assert result["changed"] and result["ranks_identical"]
    assert results[0]["first_batch"] != results[1]["first_batch"]  # each rank draws its own data
