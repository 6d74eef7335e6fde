"""Importer ``adaface``: the AdaFace authors' PyTorch Lightning checkpoints (``adaface_ir101_webface12m.ckpt``, ...).

What such a file holds (github.com/mk-minchul/AdaFace, ``train_val.py``, ``net.py``, ``head.py``): Lightning's
checkpoint dict (``epoch``, ``global_step``, ``pytorch-lightning_version``, ``hyper_parameters``, optimiser and
scheduler states, ...) whose ``state_dict`` has the backbone under ``model.`` and the AdaFace head under
``head.`` (``kernel`` (E, classes) and the batch statistics ``t``, ``batch_mean``, ``batch_std``).

The backbone is the IR net of :mod:`marginlab.backbones.iresnet`, module for module; only the attribute
names differ, so the import is a renaming::

    model.input_layer.{0 conv, 1 BN, 2 PReLU}           → stem.*
    model.body.N.res_layer.{0 BN, 1 conv, 2 BN, 3 PReLU, 4 conv, 5 BN}   → body.N.residual.*
    model.body.N.shortcut_layer.{0 conv1x1, 1 BN}       → body.N.shortcut.*  (absent where the shortcut is
                                                          the parameterless MaxPool2d(1, stride): in == out)
    model.output_layer.{0 BN2d, 3 Linear, 4 BN1d(affine=False)}  → output_layer.* (same indices)

The official ``ir_101`` is built with IR-100's unit counts [3, 13, 30, 3] (``net.py``: ``IR_101`` calls
``Backbone(input_size, 100, 'ir')``), so it imports as ``ir_100``. Without ``--arch`` the network is read off
the keys (units per stage); with it, the keys must agree. The official inference (``inference.py``) feeds BGR
images as ``(x/255 − 0.5)/0.5``, the project's ``BGR`` convention; the backbone returns the unnormalised
feature (the official forward divides by its norm and returns both, so ``feature · norm`` is this output).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from marginlab.backbones.iresnet import IR_UNITS, STAGE_CHANNELS
from marginlab.core.io import sha256_file
from marginlab.models import ModelFileError
from marginlab.released.checkpoint_import import check_weights, checked_arch, prepare_folder, units_by_channels, write_model
from marginlab.released.importers import register_importer
from marginlab.released.safe_checkpoint import read_checkpoint

__all__ = ["OFFICIAL_ARCHS", "import_adaface"]

#: The official architecture names and the project backbone each is (ir_101 has IR-100's units).
OFFICIAL_ARCHS: dict[str, str] = {"ir_18": "ir_18", "ir_34": "ir_34", "ir_50": "ir_50", "ir_101": "ir_100"}
_UNITS = {official: IR_UNITS[ours] for official, ours in OFFICIAL_ARCHS.items()}

#: official attribute → ours, by position in the key (``model.`` already stripped).
_RENAMES = ((re.compile(r"^input_layer\."), "stem."),
            (re.compile(r"^body\.(\d+)\.res_layer\."), r"body.\1.residual."),
            (re.compile(r"^body\.(\d+)\.shortcut_layer\."), r"body.\1.shortcut."),
            (re.compile(r"^output_layer\."), "output_layer."))
_BACK = ((re.compile(r"^stem\."), "input_layer."),
         (re.compile(r"^body\.(\d+)\.residual\."), r"body.\1.res_layer."),
         (re.compile(r"^body\.(\d+)\.shortcut\."), r"body.\1.shortcut_layer."),
         (re.compile(r"^output_layer\."), "output_layer."))


def _rename(key: str, rules) -> str | None:
    for pattern, replacement in rules:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return None


def _file_key(ours: str) -> str:
    """Our key as the official checkpoint spells it (for error messages)."""
    return "state_dict.model." + (_rename(ours, _BACK) or ours)


def _lightning_state(src: Path, payload: Any) -> Mapping[str, Any]:
    if isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        state = payload["state_dict"]
        if any(isinstance(k, str) and k.startswith("model.") for k in state):
            return state
        raise ModelFileError(f"{src}: its state_dict has no 'model.' keys (the AdaFace backbone); "
                             "is it an AdaFace checkpoint?")
    keys = [k for k in payload if isinstance(k, str)] if isinstance(payload, Mapping) else []
    if "state_dict_backbone" in keys or any(k.removeprefix("module.").startswith(("layer1.", "conv1.")) for k in keys):
        raise ModelFileError(f"{src} looks like an insightface arcface_torch backbone (conv1/layer1.. keys, no "
                             "Lightning state_dict): import it with --format insightface")
    raise ModelFileError(f"{src} is not an AdaFace Lightning checkpoint: no 'state_dict' entry "
                         f"(it holds {', '.join(map(str, keys[:5])) or type(payload).__name__})")


def _units(src: Path, state: Mapping[str, Any]) -> tuple[tuple[int, ...], str]:
    """Units per stage, from the output channels of each unit's first 3x3 conv (``res_layer.1.weight``)."""
    channels: dict[int, int] = {}
    for key, value in state.items():
        found = re.fullmatch(r"body\.(\d+)\.res_layer\.1\.weight", key)
        if found:
            if not isinstance(value, torch.Tensor) or value.ndim != 4:
                raise ModelFileError(f"{src}: state_dict.model.{key} is not a 4-d conv weight")
            channels[int(found.group(1))] = int(value.shape[0])
    if sorted(channels) != list(range(len(channels))) or not channels:
        raise ModelFileError(f"{src}: the model.body.N.res_layer keys do not number units 0..N-1 "
                             f"(found {sorted(channels)[:8]}...)")
    return units_by_channels(channels, STAGE_CHANNELS), "model.body.N.res_layer.1.weight keys"


def _head_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
    head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.") and isinstance(v, torch.Tensor)}
    return head or None


def _known_training(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The plain values of Lightning's bookkeeping worth keeping (epoch, step, version, the run's data path)."""
    kept: dict[str, Any] = {}
    for key in ("epoch", "global_step", "pytorch-lightning_version"):
        if isinstance(payload.get(key), (int, str)):
            kept[key] = payload[key]
    hparams = payload.get("hyper_parameters")
    values = vars(hparams) if hasattr(hparams, "__dict__") and not isinstance(hparams, Mapping) else hparams
    if isinstance(values, Mapping):
        for key in ("arch", "head", "train_data_path", "data_root", "epochs", "batch_size", "m", "h", "s", "t_alpha"):
            if isinstance(values.get(key), (int, float, str)):
                kept[f"hparams.{key}"] = values[key]
    return kept


@register_importer("adaface", archs=tuple(OFFICIAL_ARCHS), infers_arch=True,
                   summary="the AdaFace authors' Lightning .ckpt (ir_18, ir_34, ir_50, ir_101 = IR-100 units)")
def import_adaface(src: Path, out: Path, arch: str | None) -> Path:
    """Import the AdaFace checkpoint ``src`` into model folder ``out`` (``arch``: official name, or None to read
    it off the keys)."""
    from marginlab.backbones import build_backbone

    payload = read_checkpoint(src)
    lightning = _lightning_state(src, payload)
    model_state = {k[len("model."):]: v for k, v in lightning.items() if isinstance(k, str) and k.startswith("model.")}
    units, where = _units(src, model_state)
    official = checked_arch(src, units, _UNITS, arch, where)
    renamed: dict[str, Any] = {}
    for key, value in model_state.items():
        ours = _rename(key, _RENAMES)
        if ours is None:
            raise ModelFileError(f"{src}: state_dict.model.{key} is not part of the official IR network "
                                 "(input_layer, body, output_layer; ir_se and bottleneck nets are not supported)")
        renamed[ours] = value
    linear = renamed.get("output_layer.3.weight")
    if not isinstance(linear, torch.Tensor) or linear.ndim != 2:
        raise ModelFileError(f"{src}: state_dict.model.output_layer.3.weight (the output Linear) is missing or not 2-d")
    embedding_size, flat = int(linear.shape[0]), int(linear.shape[1])
    side = round((flat / STAGE_CHANNELS[-1]) ** 0.5)
    if side * side * STAGE_CHANNELS[-1] != flat or side not in (7, 14):
        raise ModelFileError(f"{src}: state_dict.model.output_layer.3.weight has {flat} inputs; the official net has "
                             f"512·7·7 (112x112 input) or 512·14·14 (224x224)")
    input_size = side * 16
    sha = sha256_file(src)
    ours = OFFICIAL_ARCHS[official]
    imported = {
        "format": "adaface", "source": str(Path(src).resolve()), "sha256": sha, "arch": ours,
        "official_arch": official, "normalised_output": False, "trained_on": None, "images_seen": None,
        "checkpoint": _known_training(payload),
    }
    prepare_folder(out, imported)
    module = build_backbone(ours, embedding_size=embedding_size, input_size=input_size)
    state = check_weights(src, module, renamed, _file_key)
    return write_model(out, backbone=ours, module=module, state=state, embedding_size=embedding_size,
                       input_size=input_size, channel_order="BGR", imported=imported,
                       head_state=_head_state(lightning))
