"""The head registry: each head declares itself once; names, defaults and ranges come from there."""

from __future__ import annotations

import pytest

from marginlab.heads import HEADS, HEAD_NAMES, MarginHead, head_defaults
from marginlab.heads.base import SCALE_RANGE, Range
from marginlab.heads.registry import register_head


def test_every_module_registers_its_head_in_table_order():
    assert HEAD_NAMES == ("normface", "cosface", "arcface", "elasticface", "curricularface", "magface", "adaface")
    for name, cls in HEADS.items():
        assert cls.name == name and issubclass(cls, MarginHead)
        assert set(head_defaults(name)) == set(cls.hyperparameter_ranges)


def test_register_rejects_duplicates_and_undeclared_hyperparameters():
    class Dup(MarginHead):
        name = "cosface"
        hyperparameter_ranges = {"s": SCALE_RANGE}

        def __init__(self, embedding_size, num_classes, *, s: float = 64.0):
            super().__init__(embedding_size, num_classes, s=s)

    with pytest.raises(ValueError, match="registered twice"):
        register_head(Dup)

    class Undeclared(MarginHead):
        name = "undeclared"
        hyperparameter_ranges = {"s": SCALE_RANGE}

        def __init__(self, embedding_size, num_classes, *, s: float = 64.0, m: float = 0.1):
            super().__init__(embedding_size, num_classes, s=s)

    with pytest.raises(ValueError, match="must name the same hyperparameters"):
        register_head(Undeclared)

    class BadDefault(MarginHead):
        name = "baddefault"
        hyperparameter_ranges = {"s": SCALE_RANGE, "m": Range(low=0.0, high=1.0)}

        def __init__(self, embedding_size, num_classes, *, s: float = 64.0, m: float = 3.0):
            super().__init__(embedding_size, num_classes, s=s)

    with pytest.raises(ValueError, match="'m' = 3.0 is outside"):
        register_head(BadDefault)
    assert "undeclared" not in HEADS and "baddefault" not in HEADS


def test_analysis_state_keys_are_checked_by_the_head():
    from marginlab.heads import build_head

    with pytest.raises(ValueError, match=r"do not apply to head 'cosface'.*none"):
        build_head("cosface", 2, 2).set_analysis_state({"t": 0.5}, 3)
    curr = build_head("curricularface", 2, 2)
    assert curr.set_analysis_state({"t": 0.5}, 3) is None and float(curr.t) == 0.5
    assert build_head("magface", 2, 2).set_analysis_state({"norm": 42.0}, 3).tolist() == [42.0] * 3
