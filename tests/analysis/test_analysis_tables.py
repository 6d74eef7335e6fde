"""Seed aggregation, paired tests, the comparison table and Table 1 (marginlab.analysis)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from marginlab.analysis import significance as sig
from marginlab.analysis.collect import (
    METRIC_COLUMNS,
    AnalysisInputError,
    flatten_metrics,
    protocol_quality,
    read_live,
    run_table,
)
from marginlab.analysis.tables import (
    ABLATION_COLUMNS,
    COMPARISON_COLUMNS,
    ablation_table,
    aggregate,
    comparison_table,
    decision_protocols,
    primary_low_quality_protocol,
    reference_label,
)
from marginlab.core.config import validate_params


# --------------------------------------------------------------------------- significance
def test_describe_mean_and_sample_std_by_hand():
    assert sig.describe([90.0, 92.0]) == (91.0, pytest.approx(math.sqrt(2.0)), 2)
    mean, std, n = sig.describe([80.0, None, float("nan")])
    assert (mean, n) == (80.0, 1) and math.isnan(std)
    assert sig.describe([])[2] == 0


def test_paired_difference_hand_computed():
    # d = [1, 1, 3]: mean 5/3, sd sqrt(4/3), t = 2.5 on 2 df; F_t2(t) = 1/2 + t / (2 sqrt(t² + 2)).
    a, b = {0: 1.0, 1: 2.0, 2: 4.0, 7: 9.0}, {0: 0.0, 1: 1.0, 2: 1.0}
    res = sig.paired_difference(a, b)
    assert res.n_pairs == 3 and res.test == "paired t-test"
    assert res.delta == pytest.approx(5 / 3)
    t = 2.5
    p = 2 * (1 - (0.5 + t / (2 * math.sqrt(t * t + 2))))
    assert res.p_value == pytest.approx(p, rel=1e-9)
    half = 4.302652729911275 * math.sqrt(4 / 3) / math.sqrt(3)  # t_{0.975, 2} · sd / sqrt(n)
    assert (res.ci_lo, res.ci_hi) == (pytest.approx(5 / 3 - half), pytest.approx(5 / 3 + half))
    ref = stats.ttest_rel([1.0, 2.0, 4.0], [0.0, 1.0, 1.0])
    assert res.p_value == pytest.approx(ref.pvalue)


def test_paired_difference_special_cases():
    one = sig.paired_difference({0: 2.0, 1: 3.0}, {0: 1.0})
    assert one.test == "n/a" and one.n_pairs == 1 and one.delta == 1.0 and math.isnan(one.p_value)
    none = sig.paired_difference({0: 1.0}, {1: 1.0})
    assert none.n_pairs == 0 and math.isnan(none.delta)
    # identical differences: the t statistic is undefined, so no p-value or CI (not p = 0)
    const = sig.paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert const.delta == 1.0 and const.test == sig.IDENTICAL_DIFFERENCES and const.n_pairs == 2
    assert math.isnan(const.p_value) and math.isnan(const.ci_lo) and math.isnan(const.ci_hi)
    zero = sig.paired_difference({0: 2.0, 1: 3.0}, {0: 2.0, 1: 3.0})
    assert zero.delta == 0.0 and math.isnan(zero.p_value)
    # counted percentages whose differences agree only up to float rounding (seen in a real report:
    # p = 8e-17 from ttest_rel) are the same case
    a, b = {0: 11 / 40 * 100, 1: 27 / 40 * 100}, {0: 19 / 40 * 100, 1: 35 / 40 * 100}
    assert a[0] - b[0] != a[1] - b[1]
    near = sig.paired_difference(a, b)
    assert near.delta == pytest.approx(-20.0) and near.test == sig.IDENTICAL_DIFFERENCES
    assert math.isnan(near.p_value)
    # differences that do vary still get the t-test
    varied = sig.paired_difference({0: 2.0, 1: 3.5}, {0: 1.0, 1: 2.0})
    assert varied.test == "paired t-test" and 0 < varied.p_value < 1


def test_pooled_std_and_noise():
    # (n - 1) s²: 1·1 + 2·4 = 9 over 3 degrees of freedom; single seeds and NaN stds are ignored.
    assert sig.pooled_std([1.0, 2.0, float("nan"), 5.0], [2, 3, 1, 1]) == pytest.approx(math.sqrt(3.0))
    assert math.isnan(sig.pooled_std([float("nan")], [1]))
    se, source = sig.difference_noise(2, 1, 2.0)
    assert source == "seeds" and se == pytest.approx(2.0 * math.sqrt(1.5))
    se, source = sig.difference_noise(1, 1, float("nan"), 0.3, 0.4)
    assert source == "test set" and se == pytest.approx(0.5)
    assert sig.difference_noise(1, 1, float("nan"))[1] == "none"


# --------------------------------------------------------------------------- collect helpers
def _metrics(acc_hq=0.95, acc_lq=0.8, std=0.01, tar=0.6, rank1=0.5) -> dict:
    return {
        "verification": {"hq": {"accuracy_mean": acc_hq, "accuracy_std": std, "fold_accuracies": [acc_hq] * 10},
                         "lq": {"accuracy_mean": acc_lq, "accuracy_std": std, "fold_accuracies": [acc_lq] * 10}},
        "ijb": {"ijbc": {"tar_at_far": {"1e-05": 0.1, "1e-04": tar}, "supported_fars": ["1e-04"], "genuine": 100}},
        "identification": {"tinyface": {"rank1": rank1, "rank5": 0.7, "probes": 400}},
    }


def test_flatten_metrics_percent_errors_and_quality():
    rows = {r["protocol"]: r for r in flatten_metrics(_metrics())}
    assert set(rows) == {"verification/hq", "verification/lq", "ijb/ijbc TAR@FAR=1e-04",
                         "identification/tinyface rank1", "identification/tinyface rank5"}  # 1e-05 unsupported
    assert rows["verification/hq"]["value"] == pytest.approx(95.0)
    assert rows["verification/hq"]["se"] == pytest.approx(1.0 / math.sqrt(10))
    assert rows["ijb/ijbc TAR@FAR=1e-04"]["se"] == pytest.approx(100 * math.sqrt(0.6 * 0.4 / 100))
    assert rows["identification/tinyface rank1"]["se"] == pytest.approx(100 * math.sqrt(0.25 / 400))
    assert rows["verification/hq"]["quality"] == "high" and rows["verification/lq"]["quality"] == "low"
    assert rows["ijb/ijbc TAR@FAR=1e-04"]["quality"] == "low"
    with pytest.raises(AnalysisInputError, match="runs/x/metrics.json"):
        flatten_metrics({"verification": {"hq": {"accuracy": 1}}}, source="runs/x/metrics.json")


def test_protocol_quality_names():
    assert protocol_quality("verification", "lfw") == "high"
    assert protocol_quality("verification", "lq") == "low"
    assert protocol_quality("verification", "agedb_lq") == "low"
    assert protocol_quality("identification", "tinyface") == "low"


def test_read_live_dvclive_and_plain_layouts(tmp_path):
    plots = tmp_path / "plots" / "metrics" / "train"
    plots.mkdir(parents=True)
    (plots / "loss.tsv").write_text("timestamp\tstep\tloss\n1\t1\t2.5\n2\t2\t1.5\n")  # dvclive
    (plots / "acc.tsv").write_text("step\tacc\n1\t0.5\n")  # plain writer
    live = read_live(tmp_path)
    assert sorted(live["metric"].unique()) == ["train/acc", "train/loss"]
    assert list(live[live["metric"] == "train/loss"]["value"]) == [2.5, 1.5]
    (plots / "bad.tsv").write_text("epoch\tx\n1\t2\n")
    with pytest.raises(AnalysisInputError, match="bad.tsv"):
        read_live(tmp_path)
    assert read_live(tmp_path / "nothing") is None


def _params():
    return validate_params({"runs": {
        "adaface-s0": {"head": "adaface", "seed": 0, "tags": ["main", "ablation_h", "ablation_proxy"]},
        "adaface-s1": {"head": "adaface", "seed": 1, "tags": ["main", "ablation_h", "ablation_proxy"]},
        "arcface-s0": {"head": "arcface", "seed": 0, "tags": ["main"]},
        "arcface-s1": {"head": "arcface", "seed": 1, "tags": ["main"]},
        "curricularface-s0": {"head": "curricularface", "seed": 0, "tags": ["main", "ablation_h"]},
        "adaface-h066-s0": {"head": "adaface", "head_params": {"h": 0.66}, "seed": 0, "tags": ["ablation_h"]},
        "adaface-h022-s0": {"head": "adaface", "head_params": {"h": 0.22}, "seed": 0, "tags": ["ablation_h"]},
        "adaface-pyi-s0": {"head": "adaface", "proxy": "p_yi", "seed": 0, "tags": ["ablation_proxy"]},
    }})


def test_run_table_labels_and_default_flags():
    runs = run_table(_params()).set_index("run")
    assert runs.loc["adaface-s1", "label"] == "adaface" and runs.loc["adaface-s1", "seed"] == 1
    assert runs.loc["adaface-s0", "is_default"] and runs.loc["arcface-s0", "is_default"]
    assert not runs.loc["adaface-h066-s0", "is_default"] and not runs.loc["adaface-pyi-s0", "is_default"]
    assert runs.loc["adaface-h066-s0", "setting_h"] == 0.66
    assert reference_label(run_table(_params())) == "adaface"


# --------------------------------------------------------------------------- tables
def _long(values: dict[str, dict[int, float]], protocol="verification/lfw", se=0.1) -> pd.DataFrame:
    family, _, rest = protocol.partition("/")
    rows = []
    for run_label, by_seed in values.items():
        head = run_label.split("-")[0]
        for seed, v in by_seed.items():
            rows.append({"run": f"{run_label}-s{seed}", "label": run_label, "head": head, "seed": seed,
                         "protocol": protocol, "family": family, "set": rest.split(" ")[0],
                         "metric": "accuracy" if family == "verification" else rest.split(" ")[-1],
                         "value": v, "se": se, "quality": protocol_quality(family, rest.split(" ")[0])})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def test_aggregate_groups_seeds_by_label():
    m = _long({"adaface": {0: 90.0, 1: 92.0}, "arcface": {0: 89.0}}, se=0.3)
    agg = aggregate(m).set_index("label")
    assert agg.loc["adaface", "mean"] == 91.0 and agg.loc["adaface", "n_seeds"] == 2
    assert agg.loc["adaface", "std"] == pytest.approx(math.sqrt(2.0))
    assert agg.loc["adaface", "se"] == pytest.approx(math.sqrt(2 * 0.09) / 2)
    assert math.isnan(agg.loc["arcface", "std"]) and agg.loc["arcface", "se"] == pytest.approx(0.3)


def test_comparison_table_deltas_tests_and_paper_numbers():
    runs = run_table(_params())
    m = pd.concat([
        _long({"adaface": {0: 99.0, 1: 99.4}, "arcface": {0: 98.0, 1: 98.6}, "curricularface": {0: 98.5}}),
        _long({"adaface": {0: 70.0, 1: 72.0}, "arcface": {0: 65.0, 1: 66.0}}, protocol="ijb/ijbc TAR@FAR=1e-04"),
        _long({"adaface-h066": {0: 50.0}}, protocol="verification/lfw"),  # not a main label: left out
    ])
    table = comparison_table(m, runs)
    assert list(table.columns) == COMPARISON_COLUMNS
    assert list(table["label"].unique()) == ["adaface", "arcface", "curricularface"]  # reference first, then head order
    t = table.set_index(["label", "protocol"])
    ref = t.loc[("adaface", "verification/lfw")]
    assert ref["test"] == "reference" and ref["delta_vs_adaface"] == 0.0
    assert ref["paper_value"] == 99.82 and ref["paper_setting"] == "R100 MS1MV2, LFW"
    arc = t.loc[("arcface", "verification/lfw")]
    assert arc["delta_vs_adaface"] == pytest.approx(98.3 - 99.2)
    expected = stats.ttest_rel([98.0, 98.6], [99.0, 99.4])
    assert arc["test"] == "paired t-test" and arc["n_pairs"] == 2
    assert arc["p_value"] == pytest.approx(expected.pvalue)
    ci = expected.confidence_interval()
    assert (arc["ci_lo"], arc["ci_hi"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert math.isnan(arc["paper_value"])  # the paper reports no ArcFace LFW number
    assert t.loc[("arcface", "ijb/ijbc TAR@FAR=1e-04"), "paper_value"] == 96.03
    cur = t.loc[("curricularface", "verification/lfw")]
    assert cur["test"] == "n/a" and cur["n_pairs"] == 1 and cur["delta_vs_adaface"] == pytest.approx(98.5 - 99.2)


def test_ablation_table_factors_settings_and_reference_rows():
    runs = run_table(_params())
    m = _long({"adaface": {0: 80.0, 1: 82.0}, "adaface-h066": {0: 79.0}, "adaface-h022": {0: 78.0},
               "adaface-pyi": {0: 70.0}, "curricularface": {0: 75.0}, "arcface": {0: 77.0}},
              protocol="verification/lq")
    table = ablation_table(m, runs)
    assert list(table.columns) == ABLATION_COLUMNS
    h = table[table["factor"] == "h"]
    assert list(h["setting"]) == ["h=0.22", "h=0.333", "h=0.66"]
    assert list(h["is_reference"]) == [False, True, False]
    assert h[h["is_reference"]]["mean"].item() == 81.0 and h[h["is_reference"]]["n_seeds"].item() == 2
    proxy = table[table["factor"] == "proxy"]
    assert list(proxy["setting"]) == ["proxy=norm", "proxy=p_yi"]
    base = table[table["factor"] == "baseline"]
    assert list(base["label"]) == ["curricularface"] and list(base["setting"]) == ["CurricularFace"]
    assert "m" not in set(table["factor"])  # no run tagged ablation_m
    assert "arcface" not in set(table["label"])
    assert list(table["factor"].unique()) == ["h", "proxy", "baseline"]


def test_ablation_table_is_empty_without_ablation_runs():
    runs = run_table(validate_params({"runs": {"adaface-s0": {"head": "adaface", "tags": ["main"]},
                                               "curricularface-s0": {"head": "curricularface", "tags": ["main"]}}}))
    m = _long({"adaface": {0: 80.0}, "curricularface": {0: 75.0}})
    assert ablation_table(m, runs).empty


def test_decision_and_primary_protocols():
    protocols = ["identification/tinyface rank5", "identification/tinyface rank1", "ijb/a TAR@FAR=1e-03",
                 "ijb/a TAR@FAR=1e-02", "ijb/b TAR@FAR=1e-04", "ijb/b TAR@FAR=1e-03", "verification/hq", "verification/lq"]
    assert decision_protocols(protocols) == ["verification/hq", "verification/lq", "ijb/a TAR@FAR=1e-03",
                                             "ijb/b TAR@FAR=1e-04", "identification/tinyface rank1"]
    quality = {p: protocol_quality(p.split("/")[0], p.split("/")[1].split(" ")[0]) for p in protocols}
    assert primary_low_quality_protocol(protocols, quality) == "verification/lq"
    no_lq = [p for p in protocols if p != "verification/lq"]
    assert primary_low_quality_protocol(no_lq, quality) == "ijb/a TAR@FAR=1e-03"
    assert primary_low_quality_protocol(["verification/hq"], quality) is None


def test_paper_numbers_json_roundtrip():
    from marginlab.analysis.paper_numbers import paper_value

    assert paper_value("adaface", "verification", "cfp_fp", "accuracy") == (98.49, "R100 MS1MV2, CFP-FP")
    assert paper_value("magface", "ijb", "ijbb", "TAR@FAR=1e-04")[0] == 94.51
    assert paper_value("curricularface", "identification", "tinyface", "rank5")[0] == 67.65
    # the synthetic hq split is shown beside the paper's high-quality average (97.19 = mean of the five)
    value, setting = paper_value("adaface", "verification", "hq", "accuracy")
    assert value == 97.19 == round(sum([99.82, 98.49, 93.53, 98.05, 96.08]) / 5, 2) and "synthetic hq" in setting
    assert paper_value("cosface", "verification", "hq", "accuracy") == (None, "")  # not in the paper
    assert paper_value("adaface", "verification", "lq", "accuracy") == (None, "")
    json.dumps(paper_value("adaface", "ijb", "ijbc", "TAR@FAR=1e-04"))
