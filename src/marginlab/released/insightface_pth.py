"""Importer ``insightface``: insightface arcface_torch backbones (``backbone.pth``, e.g. ``ms1mv3_arcface_r100``).

arcface_torch saves the backbone's bare ``state_dict`` (``torch.save(backbone.module.state_dict(), ...)``); its
training checkpoint ``checkpoint_gpu_0.pt`` holds the same under ``state_dict_backbone``, and a file saved
from the DDP wrapper itself has every key prefixed ``module.``; all three are read. The keys are
arcface_torch's own module names, which :mod:`marginlab.backbones.iresnet_insightface` keeps, so the import
checks and copies them without renaming (``insightface_r18`` ... ``insightface_r200``).

Without ``--arch`` the network is read off the keys (units per ``layerK``). arcface_torch's inference and
evaluation (``inference.py``, ``eval_ijbc.py``) feed RGB images (OpenCV's BGR converted) as
``(x/255 − 0.5)/0.5``, and training decodes its record files to RGB: the model folder records ``RGB``.
The output is the unnormalised ``features`` BatchNorm output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from marginlab.backbones.iresnet import STAGE_CHANNELS
from marginlab.backbones.iresnet_insightface import INSIGHTFACE_UNITS
from marginlab.core.io import sha256_file
from marginlab.models import ModelFileError
from marginlab.released.checkpoint_import import check_weights, checked_arch, prepare_folder, write_model
from marginlab.released.importers import register_importer
from marginlab.released.safe_checkpoint import read_checkpoint

__all__ = ["ARCHS", "import_insightface"]

#: ``--arch`` names (arcface_torch's ``get_model`` names) → backbone names.
ARCHS: dict[str, str] = {name.removeprefix("insightface_"): name for name in INSIGHTFACE_UNITS}
_UNITS = {arch: INSIGHTFACE_UNITS[backbone] for arch, backbone in ARCHS.items()}


def _backbone_state(src: Path, payload: Any) -> tuple[dict[str, Any], str]:
    """The backbone's state dict and the prefix its keys had in the file (for error messages)."""
    if not isinstance(payload, Mapping):
        raise ModelFileError(f"{src} is not an arcface_torch backbone: it holds a {type(payload).__name__}, "
                             "not a state dict")
    if isinstance(payload.get("state_dict"), Mapping):
        inner = payload["state_dict"]
        if any(isinstance(k, str) and k.startswith("model.") for k in inner):
            raise ModelFileError(f"{src} looks like an AdaFace Lightning checkpoint (state_dict with 'model.' keys): "
                                 "import it with --format adaface")
    prefix = ""
    state: Mapping[str, Any] = payload
    if isinstance(payload.get("state_dict_backbone"), Mapping):  # arcface_torch's checkpoint_gpu_N.pt
        state, prefix = payload["state_dict_backbone"], "state_dict_backbone."
    keys = [k for k in state if isinstance(k, str)]
    if len(keys) != len(state):
        raise ModelFileError(f"{src}: its state dict has keys that are not strings")
    if keys and all(k.startswith("module.") for k in keys):  # saved from the DDP wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
        prefix += "module."
    if "conv1.weight" not in state or not any(k.startswith("layer1.") for k in state):
        shown = ", ".join(keys[:5]) or "nothing"
        raise ModelFileError(f"{src} is not an arcface_torch IR-ResNet backbone: no conv1.weight / layer1.* keys "
                             f"(it holds {shown})")
    return dict(state), prefix


def _units(src: Path, state: Mapping[str, Any], prefix: str) -> tuple[tuple[int, ...], str]:
    """Units per layer, from the ``layerK.N.`` indices (which must run 0..N-1)."""
    found: dict[int, set[int]] = {k: set() for k in range(1, 5)}
    for key in state:
        match = re.match(r"layer([1-4])\.(\d+)\.", key)
        if match:
            found[int(match.group(1))].add(int(match.group(2)))
    for layer, indices in found.items():
        if sorted(indices) != list(range(len(indices))):
            raise ModelFileError(f"{src}: the {prefix}layer{layer}.N keys do not number units 0..N-1 "
                                 f"(found {sorted(indices)[:8]})")
    return tuple(len(found[k]) for k in range(1, 5)), f"{prefix}layer1..4.N keys"


@register_importer("insightface", archs=tuple(ARCHS), infers_arch=True,
                   summary="an insightface arcface_torch backbone.pth (r18, r34, r50, r100, r200)")
def import_insightface(src: Path, out: Path, arch: str | None) -> Path:
    """Import the arcface_torch backbone ``src`` into model folder ``out`` (``arch`` r18 ... r200, or None to read
    it off the keys)."""
    from marginlab.backbones import build_backbone

    state, prefix = _backbone_state(src, read_checkpoint(src))
    units, where = _units(src, state, prefix)
    arch = checked_arch(src, units, _UNITS, arch, where)
    fc = state.get("fc.weight")
    if not isinstance(fc, torch.Tensor) or fc.ndim != 2:
        raise ModelFileError(f"{src}: {prefix}fc.weight (the output Linear) is missing or not 2-d")
    embedding_size, flat = int(fc.shape[0]), int(fc.shape[1])
    side = round((flat / STAGE_CHANNELS[-1]) ** 0.5)
    if side < 1 or side * side * STAGE_CHANNELS[-1] != flat:
        raise ModelFileError(f"{src}: {prefix}fc.weight has {flat} inputs; arcface_torch's fc has 512·7·7 (112x112 input)")
    input_size = side * 16
    backbone = ARCHS[arch]
    imported = {
        "format": "insightface", "source": str(Path(src).resolve()), "sha256": sha256_file(src), "arch": backbone,
        "official_arch": arch, "normalised_output": False, "trained_on": None, "images_seen": None,
    }
    prepare_folder(out, imported)
    module = build_backbone(backbone, embedding_size=embedding_size, input_size=input_size)
    checked = check_weights(src, module, state, lambda key: prefix + key)
    return write_model(out, backbone=backbone, module=module, state=checked, embedding_size=embedding_size,
                       input_size=input_size, channel_order="RGB", imported=imported)
