"""marginlab.report.evidence: nested claim numbers laid out as key-values and tables."""

from marginlab.report.evidence import layout_evidence


def fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else ("[" + ", ".join(fmt(x) for x in v) + "]" if isinstance(v, list) else str(v))


def test_scalars_and_run_table():
    scalars, tables = layout_evidence({
        "paper_correlation": 0.5235, "target": "iq", "ci": [0.1, 0.2],
        "runs": {"adaface-s0": {"epoch": 6, "spearman": 0.1696, "spearman_ci": [0.0846, 0.2595]},
                 "adaface-s1": {"epoch": 6, "spearman": 0.1781, "pearson": 0.18}},
    }, fmt)
    assert scalars == [("paper_correlation", "0.523"), ("target", "iq"), ("ci", "[0.1, 0.2]")]
    (t,) = tables
    assert t.title == "runs" and t.columns == ["epoch", "spearman", "spearman_ci", "pearson"]
    assert t.rows == [("adaface-s0", ["6", "0.17", "[0.0846, 0.26]", ""]),
                      ("adaface-s1", ["6", "0.178", "", "0.18"])]


def test_list_of_comparisons_and_deep_nesting():
    _, (comp, ratios) = layout_evidence({
        "comparisons": [{"a": "adaface", "b": "cosface", "delta": -1.5}, {"a": "adaface", "b": "arcface", "delta": 2.0}],
        "ratios": {"j=0": {"cosface": {"ratio": 1.0}, "arcface": {"ratio": 0.72}}, "j=0.5": {"cosface": {"ratio": 1.0}}},
    }, fmt)
    assert comp.columns == ["a", "b", "delta"]
    assert comp.rows == [("1", ["adaface", "cosface", "-1.5"]), ("2", ["adaface", "arcface", "2"])]
    assert [label for label, _ in ratios.rows] == ["j=0 · cosface", "j=0 · arcface", "j=0.5 · cosface"]
    assert ratios.columns == ["ratio"] and ratios.rows[1][1] == ["0.72"]


def test_mixed_levels_keep_their_own_rows():
    # a record with scalars and a nested mapping: its scalars form one row, the child another
    _, (t,) = layout_evidence({"runs": {"adaface-s0": {"gap": 0.06, "ci": {"lo": -0.07, "hi": 0.2}}}}, fmt)
    assert t.rows == [("adaface-s0", ["0.06", "", ""]), ("adaface-s0 · ci", ["", "-0.07", "0.2"])]


def test_empty_and_non_mapping_inputs():
    assert layout_evidence({}, fmt) == ([], [])
    assert layout_evidence(None, fmt) == ([], [])
    assert layout_evidence("text", fmt) == ([], [])
    scalars, tables = layout_evidence([1, 2], fmt)
    assert scalars == [("values", "[1, 2]")] and tables == []
