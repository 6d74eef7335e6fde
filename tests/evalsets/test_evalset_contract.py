"""Every registered evaluation-set format keeps the contract its consumers rely on.

Parametrised over the registry (as tests/heads/ is over the heads): each format is found in a prepared
directory written by the project's own prepare stage and in one written the way outside tools write it
(tests/evalset_inputs.py), yields RGB images for quality scoring, evaluates with a toy embedding to the
metrics, ROC rows and norms evaluate, analysis and the report read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalset_inputs import toy_tools, write_tool_prepared
from marginlab.core.config import DataConfig, EvaluateConfig
from marginlab.evalsets import EVAL_SETS, EvalSet, SetResult, eval_sets
from marginlab.core.layouts import PreparedLayout

FORMATS = eval_sets()
#: The metrics.json entry of each built-in family (a new format states its own keys in its test).
ENTRY_KEYS = {
    "verification": {"accuracy_mean", "accuracy_std", "threshold_mean", "pairs", "fold_accuracies",
                     "fold_thresholds", "val_at_far"},
    "ijb": {"fusion", "tar_at_far", "supported_fars", "templates", "pairs", "genuine", "impostor"},
    "identification": {"rank1", "rank5", "probes", "probes_without_match", "gallery", "distractors"},
}
CFG = EvaluateConfig(fars=[1e-2, 1e-1], ranks=[1, 5])


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, PreparedLayout]:
    from marginlab.data.prepare import run_prepare
    from prepare_inputs import TINY_SYNTH, tiny_params

    root = tmp_path_factory.mktemp("evalsets")
    run_prepare(tiny_params(source="synthetic", synthetic=TINY_SYNTH), root / "writers", workers=1, progress=False)
    return {"writers": PreparedLayout(root / "writers"), "tools": PreparedLayout(write_tool_prepared(root / "tools"))}


def test_the_registry_holds_the_built_in_formats_in_table_order():
    assert [f.name for f in FORMATS] == ["verification", "ijb", "tinyface"]
    assert [f.family for f in FORMATS] == ["verification", "ijb", "identification"]
    assert [f.split_prefix for f in FORMATS] == ["bin", "ijb", "tinyface"]
    assert set(EVAL_SETS) == {f.name for f in FORMATS}
    for f in FORMATS:
        assert isinstance(f, EvalSet) and f.title and f.expects


def test_facts_kept_apart_from_the_data_code_agree_with_it():
    """The torch- and cv2-free copies of two data facts match their sources."""
    from marginlab.data.formats import IDENTIFICATION_PARTS
    from marginlab.data.synthetic import VERIFICATION_BINS
    from marginlab.evalsets.ijb_sets import DECISION_FAR, DECISION_FAR_KEY
    from marginlab.evalsets.tinyface_set import PARTS
    from marginlab.evalsets.verification_bins import SUMMARY_SETS
    from marginlab.evaluate.ijb_protocol import far_key

    assert PARTS == tuple(IDENTIFICATION_PARTS) and SUMMARY_SETS == tuple(VERIFICATION_BINS)
    assert far_key(DECISION_FAR) == DECISION_FAR_KEY


@pytest.mark.slow
def test_loading_the_formats_loads_neither_torch_nor_the_evaluate_package():
    """Quality scoring, analysis and the report load every format; only the evaluate stage needs its code."""
    import subprocess
    import sys

    code = ("import sys, marginlab.evalsets, marginlab.analysis.collect, marginlab.report.render; "
            "print(sorted(m for m in ('torch', 'marginlab.evaluate', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_second_format_with_a_taken_name_family_or_prefix_is_refused():
    from marginlab.evalsets import register_eval_set

    for attrs, message in (({"name": "verification"}, "registered twice"), ({"family": "ijb"}, "family 'ijb'"),
                           ({"split_prefix": "bin"}, "split_prefix 'bin'")):
        cls = type("Clash", (EvalSet,), {"name": "clash", "family": "clash", "split_prefix": "clash", **attrs})
        with pytest.raises(ValueError, match=message):
            register_eval_set(cls)
    assert "clash" not in EVAL_SETS


@pytest.mark.parametrize("source", ["writers", "tools"])
@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_each_format_is_found_and_yields_images_for_quality_scoring(fmt, source, layouts):
    layout = layouts[source]
    names = fmt.instances(layout)
    assert names and names == sorted(names)
    for name in names:
        splits = fmt.splits(layout, name)
        assert splits and len({s.split for s in splits}) == len(splits)
        for s in splits:
            assert s.split.startswith(f"{fmt.split_prefix}:") and s.length > 0
            assert s.files and all(p.is_file() for p in s.files)
            for i in (0, s.length - 1):  # loaded in order, as the quality stage does
                img = s.load(i)
                assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert fmt.instances(PreparedLayout(layout.root / "absent")) == []


@pytest.mark.parametrize("source", ["writers", "tools"])
@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_each_format_evaluates_a_toy_embedding_to_what_analysis_and_the_report_read(fmt, source, layouts):
    layout = layouts[source]
    sets = {}
    for name in fmt.instances(layout):
        result = fmt.evaluate(layout, name, toy_tools(CFG))
        assert isinstance(result, SetResult)
        assert set(result.metrics) == ENTRY_KEYS[fmt.family]
        if result.roc is not None:
            assert list(result.roc.columns) == ["protocol", "set", "fpr", "tpr", "threshold"]
            assert set(result.roc["set"]) == {name}
        lengths = {s.split: s.length for s in fmt.splits(layout, name)}
        norms = pd.concat(result.norms, ignore_index=True)
        assert list(norms.columns) == ["split", "index", "norm", "gt_quality"]
        assert norms.groupby("split").size().to_dict() == lengths  # every scored image has its norm
        assert (norms["norm"] > 0).all()
        if source == "writers":  # the synthetic sets carry their ground truth
            assert norms["gt_quality"].notna().all()
        rows = fmt.metric_rows(name, result.metrics)
        assert rows or source == "writers"  # the tiny synthetic IJB set supports no FAR, so it has no row
        assert all(set(r) == {"protocol", "metric", "value", "se"} for r in rows)
        assert all(r["protocol"].startswith(f"{fmt.family}/{name}") and 0 <= r["value"] <= 100 for r in rows)
        assert set(fmt.decision_protocols([r["protocol"] for r in rows])) <= {r["protocol"] for r in rows}
        assert fmt.quality(name) in ("low", "high")
        sets[name] = result.metrics
    summary, empty = fmt.summary(sets), fmt.summary({})
    assert list(summary) == list(empty) and all(v is None for v in empty.values())  # a stable schema
    assert fmt.unavailable(DataConfig(source="synthetic")) is None


def test_ground_truth_files_name_the_synthetic_meta_of_every_split(layouts):
    layout = layouts["writers"]
    for fmt in FORMATS:
        splits = {s.split for name in fmt.instances(layout) for s in fmt.splits(layout, name)}
        files = fmt.ground_truth_files(layout)
        assert {g.split for g in files} == splits and all(g.path.is_file() for g in files)
