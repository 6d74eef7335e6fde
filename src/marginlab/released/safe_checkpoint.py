"""Read a released checkpoint as data: tensors and plain values, never an object the file asks for.

``torch.load(weights_only=True)`` refuses every PyTorch Lightning checkpoint, because Lightning stores a
few objects beside the weights: the hyper-parameters (an ``argparse.Namespace``, Lightning's
``AttributeDict``, AdaFace's ``utils.dotdict``) and, before Lightning 1.5, callback states keyed by the
callback's class. Those few names are allowed here, each mapped to an inert stand-in defined in this
module (:data:`STAND_INS`): unpickling builds the stand-in from the file's plain data and never imports or
calls the original class. Every other global (``os.system`` in a ``__reduce__``, a model class, ...) is
refused by torch's restricted unpickler before anything runs, and reported as
:class:`marginlab.models.ModelFileError` naming the file and the global it wanted.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

__all__ = ["InertNamespace", "STAND_INS", "StandInClass", "read_checkpoint"]


class InertNamespace:
    """Stands in for ``argparse.Namespace``: unpickling only sets its attributes from the file's plain data."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"InertNamespace({', '.join(f'{k}={v!r}' for k, v in sorted(self.__dict__.items()))})"


class _PlainDict:
    """Stands in for a ``dict`` subclass (``AttributeDict``, ``dotdict``): ``__new__`` returns a plain dict, which
    torch's unpickler then fills item by item (it fills plain dicts only)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return {}


class StandInClass:
    """Base of the stand-ins for a class that a checkpoint names but never instantiates (Lightning < 1.5 keys
    its callback states by the callback class). ``original`` is the name the file used."""

    original = ""


def _class_ref(full_name: str) -> type:
    return type(full_name.rsplit(".", 1)[-1], (StandInClass,), {"original": full_name})


_DICT_SUBCLASSES = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
    "utils.dotdict",  # AdaFace's main.py: hparams = dotdict(vars(args))
)
_CALLBACK_CLASSES = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
)

#: The globals a checkpoint may name, and what is built instead of each.
STAND_INS: dict[str, Any] = {
    "argparse.Namespace": InertNamespace,
    **{name: _PlainDict for name in _DICT_SUBCLASSES},
    **{name: _class_ref(name) for name in _CALLBACK_CLASSES},
}


def read_checkpoint(path: str | Path) -> Any:
    """The contents of checkpoint ``path`` (tensors on the CPU), loaded with torch's restricted unpickler and
    the :data:`STAND_INS` allowed. ``ModelFileError`` (naming ``path``) when it is missing, not a torch file,
    or names any other global."""
    import torch

    from marginlab.models import ModelFileError

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file (the checkpoint to read)")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(
            [(stand_in, name) for name, stand_in in STAND_INS.items()]
        ):
            warnings.simplefilter("ignore")  # torch's note on an unusual pickle protocol: the error says enough
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refusal = _refusal(str(err))
        if refusal is not None:
            raise ModelFileError(f"{path} was refused: {refusal}; a checkpoint of weights needs no such thing "
                                 "(nothing from the file was run)") from None
        raise ModelFileError(f"{path} is not a PyTorch checkpoint ({_first_line(err)})") from None
    except Exception as err:  # torch's many ways of saying "not a checkpoint": KeyError, RuntimeError, EOFError
        detail = _first_line_of(str(err)) or "the file ends early"
        raise ModelFileError(f"{path} is not a PyTorch checkpoint ({type(err).__name__}: {detail})") from None


def _refusal(text: str) -> str | None:
    """What the refused file asked for, from torch's message ("GLOBAL posix.system", an object to build), or
    None when the file is simply not a pickle."""
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks to import {found.group(1)}"
    found = re.search(r"unrecognized function (.+?)(?: which belongs|\n|$)", text)
    if found:
        return f"it asks to call {found.group(1).strip()}"
    if "Can only" in text:
        return f"it asks the loader for something other than tensors and plain data ({_first_line_of(text.split('WeightsUnpickler error:')[-1])})"
    return None


def _first_line_of(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _first_line(err: BaseException) -> str:
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:")[-1]
    return _first_line_of(text) or type(err).__name__
