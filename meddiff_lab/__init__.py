"""meddiff-lab: the helper package of a Jupyter course on diffusion models for medical images."""

__version__ = "0.1.0"
