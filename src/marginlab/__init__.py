"""marginlab: reproduce AdaFace (CVPR 2022) and its margin-loss baselines as a reproducible pipeline."""

__version__ = "0.1.0"
