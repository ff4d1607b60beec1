"""meddiff_lab/experiments/_results.py: every experiment's results files and its folder's profile."""

import dataclasses
import json

import pytest

from meddiff_lab.experiments._results import claim_folder, write_results


@dataclasses.dataclass(frozen=True)
class Sizes:
    name: str
    steps: int
    sweep: tuple = (1, 2)


def test_write_results_writes_the_numbers_and_the_table(tmp_path):
    import numpy as np

    json_path, markdown_path = write_results({"fid": np.float32(1.5)}, tmp_path / "new", "| a |\n")
    assert json.loads(json_path.read_text(encoding="utf-8")) == {"fid": 1.5}
    assert markdown_path.read_text(encoding="utf-8") == "| a |\n"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["results.json", "results.md"]


def test_a_folder_keeps_its_first_profile_and_names_what_differs(tmp_path):
    claim_folder(tmp_path, Sizes("a", 3))
    claim_folder(tmp_path, Sizes("a", 3))  # the same sizes: resuming is fine
    assert json.loads((tmp_path / "profile.json").read_text(encoding="utf-8")) == {
        "name": "a",
        "steps": 3,
        "sweep": [1, 2],
    }
    with pytest.raises(ValueError, match="another profile \\(differs in steps, sweep\\)"):
        claim_folder(tmp_path, Sizes("a", 4, (1,)))
