"""``read_checkpoint``: a Lightning checkpoint's benign objects become inert stand-ins; anything else is refused
unrun, and errors name the file."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import types

import pytest
import torch

from marginlab.models import ModelFileError
from marginlab.released.safe_checkpoint import InertNamespace, StandInClass, read_checkpoint


def _fake_class(monkeypatch, module: str, name: str, base: type = object) -> type:
    """A class importable as ``module.name`` for pickling (the module and its parents only exist for this test)."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    cls = type(name, (base,), {"__module__": module})
    setattr(sys.modules[module], name, cls)
    return cls


def test_lightning_objects_load_as_inert_stand_ins(tmp_path, monkeypatch):
    attribute_dict = _fake_class(monkeypatch, "pytorch_lightning.utilities.parsing", "AttributeDict", dict)
    dotdict = _fake_class(monkeypatch, "utils", "dotdict", dict)
    model_checkpoint = _fake_class(monkeypatch, "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    payload = {
        "epoch": 3, "global_step": 9, "pytorch-lightning_version": "1.4.9", "state_dict": {"model.w": torch.ones(2)},
        "hyper_parameters": argparse.Namespace(arch="ir_50", lr=0.1, nested=argparse.Namespace(x=[1, 2])),
        "hparams": attribute_dict(arch="ir_50", m=0.4), "args": dotdict(gpus=2),
        "callbacks": {model_checkpoint: {"best_model_score": torch.tensor(0.5)}},
        "lr_schedulers": [torch.optim.lr_scheduler.MultiStepLR(opt, [2]).state_dict()],
    }
    torch.save(payload, tmp_path / "a.ckpt")
    loaded = read_checkpoint(tmp_path / "a.ckpt")
    assert torch.equal(loaded["state_dict"]["model.w"], torch.ones(2))
    hp = loaded["hyper_parameters"]
    assert isinstance(hp, InertNamespace) and hp.arch == "ir_50" and hp.nested.x == [1, 2]
    assert type(loaded["hparams"]) is dict and loaded["hparams"] == {"arch": "ir_50", "m": 0.4}
    assert type(loaded["args"]) is dict and loaded["args"] == {"gpus": 2}
    (key,) = loaded["callbacks"]
    assert issubclass(key, StandInClass) and key.original.endswith("model_checkpoint.ModelCheckpoint")
    assert loaded["lr_schedulers"][0]["milestones"] == {2: 1}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_reduce_payload_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {}, "hyper_parameters": _Evil(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(ModelFileError) as err:
        read_checkpoint(tmp_path / "evil.ckpt")
    message = str(err.value)
    assert str(tmp_path / "evil.ckpt") in message and "system" in message and "nothing from the file was run" in message
    assert "\n" not in message and not marker.exists()


def test_a_stand_in_name_cannot_smuggle_a_call(tmp_path, monkeypatch):
    """A class pickled *as* argparse.Namespace with a __reduce__ to os.system: the global os.system is refused."""
    marker = tmp_path / "PWNED"

    class Sneaky:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    Sneaky.__module__, Sneaky.__qualname__ = "argparse", "Namespace"
    monkeypatch.setattr(argparse, "Namespace", Sneaky)
    torch.save({"hyper_parameters": Sneaky()}, tmp_path / "sneaky.ckpt")
    with pytest.raises(ModelFileError, match="refused"):
        read_checkpoint(tmp_path / "sneaky.ckpt")
    assert not marker.exists()


def test_an_unknown_class_is_refused_by_name(tmp_path, monkeypatch):
    net_class = _fake_class(monkeypatch, "net", "Backbone")
    torch.save({"model": net_class()}, tmp_path / "whole_model.pt")
    with pytest.raises(ModelFileError, match=r"whole_model\.pt was refused: it asks to import net\.Backbone"):
        read_checkpoint(tmp_path / "whole_model.pt")


@pytest.mark.parametrize("content", [b"", b"hello\n", b"PK\x03\x04truncated", pickle.dumps({"a": 1}, protocol=4)])
def test_files_that_are_no_checkpoint_give_one_line_errors(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"{path} is not a PyTorch checkpoint") and "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        read_checkpoint(tmp_path / "absent.ckpt")
