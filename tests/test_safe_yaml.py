"""marginlab.core.safe_yaml.load_bounded returns exactly what yaml.safe_load returns, for every params file of the
project and for the YAML features params files use (and the rarer ones it hands back to PyYAML)."""

from __future__ import annotations

import datetime

import pytest
import yaml

from marginlab.core.safe_yaml import YamlLimitError, load_bounded
from pipeline_helpers import ROOT

CASES = [
    "", "---\n", "~", "a: 1", "[1, 2, [3, {x: y}]]", "a: {b: [1, 2.5, -3e-2, .inf, -.Inf, .nan]}",
    "a: yes\nb: no\nc: on\nd: null\ne: ~\nf: True\ng: 'yes'\nh: \"1\"\ni: 0x1f\nj: 0o17\nk: 1_000\nl: 2026-12-07",
    "t: 2026-12-07 14:00:00\nu: !!str 12\nv: !!float 3\nw: !!binary aGVsbG8=\nx: !!int '7'\ny: !!bool yes\nz: !!null ''",
    "a: !!str\nb: !!timestamp 2026-12-07\nc: !!str &k v\nd: *k\n", "a: !!int nope\n",
    "s: !!set {a, b}\no: !!omap [a: 1, b: 2]\np: !!pairs [a: 1, a: 2]",
    "base: &b {x: 1, y: 2}\nderived: {<<: *b, y: 3}\n", "b: &b {x: 1}\nd: {z: 0, <<: *b, x: 2}\n",
    "a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nm: {<<: [*a, *b], w: 0}\n", "a: &a {x: 1}\nm: {<<: *a, <<: {x: 5, q: 1}}\n",
    "m: {<<: 3}\n", "m: {<<: [1, 2]}\n", "a: &a {x: 1}\nm: &m {<<: *a}\nn: *m\n",
    "a: &x [1, 2]\nb: *x\nc: {k: *x}\n", "dup: 1\ndup: 2\n", "? [1, 2]\n: v\n",
    "a: &s hello\nb: *s\n*s : key-from-alias\n", "'<<': quoted\n", "a: |\n  line one\n  line two\n",
    "a: >-\n  folded\n  text\n", "- a\n- - b\n  - c\n- {d: e}\n", "a: !custom 1\n",
]


@pytest.mark.parametrize("text", CASES)
def test_same_result_as_safe_load(text):
    try:
        expected = yaml.safe_load(text)
    except Exception as err:  # noqa: BLE001 - PyYAML lets a bare ValueError out of "!!int nope"
        with pytest.raises(yaml.YAMLError if isinstance(err, ValueError) else type(err)):  # always a YAMLError here
            load_bounded(text)
        return
    got = load_bounded(text)
    assert got == expected or (expected != expected and got != got)  # NaN at top level
    assert type(got) is type(expected)
    if isinstance(expected, dict):
        assert {k: list(v) if isinstance(v, dict) else v for k, v in got.items()} == \
               {k: list(v) if isinstance(v, dict) else v for k, v in expected.items()}  # key order too


def test_every_params_file_of_the_project_loads_identically():
    for path in [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml")), ROOT / "dvc.yaml"]:
        text = path.read_text()
        assert load_bounded(text) == yaml.safe_load(text), path.name


def test_aliases_share_the_object_like_pyyaml():
    data = load_bounded("a: &x [1]\nb: *x\n")
    assert data["a"] is data["b"]
    assert isinstance(load_bounded("d: 2026-12-07")["d"], datetime.date)


def test_bounds_apply_on_the_fallback_path_too():
    # an explicit tag goes to PyYAML's constructor; the alias bound is checked before that
    bomb = "l0: &l0 [" + ", ".join(["x"] * 10) + "]\n" + "".join(
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 8))
    with pytest.raises(YamlLimitError, match="expand to more than 1,000 values"):
        load_bounded(bomb + "m: !!set {a}\n", limit=1000)
    with pytest.raises(yaml.YAMLError):  # a second document: PyYAML's own error, after the bounds pass
        load_bounded("a: 1\n---\nb: 2\n")
