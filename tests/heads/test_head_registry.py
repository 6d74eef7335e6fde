"""The head registry: each head declares itself once; names, defaults and ranges come from there."""

from __future__ import annotations

import pytest

from marginlab.head_specs import HEAD_SPECS, HeadSpec
from marginlab.heads import HEADS, HEAD_NAMES, MarginHead, build_head, head_defaults
from marginlab.heads.registry import register_head
from marginlab.core.hyperparameters import Range
from marginlab.core.name_registry import Registry


def test_every_declared_head_has_its_implementation_in_table_order():
    assert HEAD_NAMES == ("normface", "cosface", "arcface", "elasticface", "curricularface", "magface", "adaface")
    assert HEAD_SPECS.names() == HEAD_NAMES and set(HEADS) == set(HEAD_NAMES)  # no declaration without a class, and back
    for name, cls in HEADS.items():
        assert cls.name == name and issubclass(cls, MarginHead) and cls.spec is HEAD_SPECS[name]
        head = build_head(name, 8, 4)
        assert head.hyperparameters == head_defaults(name) == cls.spec.defaults()  # declared once, used as is


def test_a_head_without_a_declaration_or_a_second_class_is_refused():
    class Undeclared(MarginHead):
        name = "undeclared"

    with pytest.raises(ValueError, match="has no declaration: add a HeadSpec"):
        register_head(Undeclared)

    class Dup(MarginHead):
        name = "cosface"

    with pytest.raises(ValueError, match="registered twice"):
        register_head(Dup)
    assert "undeclared" not in HEADS and HEADS["cosface"] is not Dup


def test_a_declaration_checks_its_own_defaults_and_every_value():
    with pytest.raises(ValueError, match="'default' = 3.0 is outside the allowed range \\[0, 1\\]"):
        Range(3.0, low=0.0, high=1.0)
    spec = HeadSpec("toy", {"m": Range(0.5, low=0.0, high=1.0)})
    assert spec.resolve({}) == {"m": 0.5} and spec.resolve({"m": 1}) == {"m": 1.0}
    with pytest.raises(ValueError, match="head 'toy': hyperparameter 'm' = 2.0 is outside"):
        spec.resolve({"m": 2.0})
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['q'\] for head 'toy'; allowed: m"):
        spec.resolve({"q": 1.0})


def test_registry_messages_list_what_is_allowed():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.add("timm/", 2, prefix=True)
    assert reg["a"] == 1 and reg.get("timm/x") == 2 and "timm/x" in reg and "timm/" not in reg
    with pytest.raises(ValueError, match=r"unknown widget 'b'; allowed: a or 'timm/<name>'"):
        reg.get("b")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 3)


def test_analysis_state_keys_are_checked_by_the_head():
    from marginlab.heads import build_head

    with pytest.raises(ValueError, match=r"do not apply to head 'cosface'.*none"):
        build_head("cosface", 2, 2).set_analysis_state({"t": 0.5}, 3)
    curr = build_head("curricularface", 2, 2)
    assert curr.set_analysis_state({"t": 0.5}, 3) is None and float(curr.t) == 0.5
    assert build_head("magface", 2, 2).set_analysis_state({"norm": 42.0}, 3).tolist() == [42.0] * 3
