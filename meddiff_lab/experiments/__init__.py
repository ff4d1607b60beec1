"""Experiment harnesses: the grids behind the course's comparisons, runnable from the command line.

Each module runs one experiment at a named profile (``ci`` for tests, ``full`` for the committed
results) and writes ``results.json`` plus a markdown table; the notebooks show those tables beside
their own smaller runs. Names are imported lazily from their modules (one experiment per module).

* :mod:`~meddiff_lab.experiments.segmentation_augmentation`: notebook 07, segmentation with few
  labels augmented by a generator pretrained on unlabelled images (``meddiff-lab experiment
  seg-augmentation``).
* :mod:`~meddiff_lab.experiments.latent_comparison`: notebook 10, pixel vs latent diffusion and
  ε / v vs rectified flow at equal training FLOPs (``meddiff-lab experiment latent-comparison``).
* :mod:`~meddiff_lab.experiments.recipe_comparison`: the model zoo's training recipe, ε vs v, min-SNR,
  noise schedule, learning rate and batch at a fixed number of training images (``meddiff-lab
  experiment recipes``).

Every module writes its results with :func:`~meddiff_lab.experiments._results.write_results`.
"""

from __future__ import annotations

from meddiff_lab._lazy import lazy_exports

# public name -> module that defines it. Add a line when you add a public name.
_PUBLIC = {
    "SegAugmentationProfile": "segmentation_augmentation",
    "SEG_AUGMENTATION_PROFILES": "segmentation_augmentation",
    "SEG_AUGMENTATION_ARMS": "segmentation_augmentation",
    "get_seg_augmentation_profile": "segmentation_augmentation",
    "run_seg_augmentation": "segmentation_augmentation",
    "write_seg_augmentation_results": "segmentation_augmentation",
    "LatentComparisonProfile": "latent_comparison",
    "LATENT_COMPARISON_PROFILES": "latent_comparison",
    "LATENT_ARMS": "latent_comparison",
    "get_latent_comparison_profile": "latent_comparison",
    "run_latent_comparison": "latent_comparison",
    "write_latent_comparison_results": "latent_comparison",
    "RecipeProfile": "recipe_comparison",
    "RECIPE_PROFILES": "recipe_comparison",
    "RECIPES": "recipe_comparison",
    "get_recipe_profile": "recipe_comparison",
    "run_recipe_comparison": "recipe_comparison",
    "write_recipe_results": "recipe_comparison",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
