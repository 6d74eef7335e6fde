"""Every number the paper reports lives in marginlab.analysis.paper_numbers; the modules that show one import it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from marginlab.analysis import paper_numbers as pn

SRC = Path(__file__).resolve().parents[2] / "src" / "marginlab"
#: Modules that quote the paper (claims, tables, figures, the report); none may carry its numbers as literals.
#: Every claim module (analysis/claims/) and figure module (analysis/figure_specs/, captions) is one of them,
#: including those added later.
CLAIM_MODULES = sorted(f"analysis/claims/{p.name}" for p in (SRC / "analysis" / "claims").glob("*.py"))
FIGURE_MODULES = sorted(f"analysis/figure_specs/{p.name}" for p in (SRC / "analysis" / "figure_specs").glob("*.py"))
QUOTING = [
    "analysis/verdict_rules.py", "analysis/claim_parts.py", *CLAIM_MODULES,
    "analysis/tables.py", "analysis/figures.py", "analysis/gst_figures.py", *FIGURE_MODULES,
    "analysis/stage.py", "analysis/gst_study.py",
    "report/render.py", "report/claims_section.py", "report/figure_list.py", "report/scale_banner.py",
    "report/templates/report.html.j2",
]


def _reported() -> set[float]:
    """The paper's reported results: Fig. 2a's correlation and every percentage of Tables 3-5."""
    values = {pn.FIG2_NORM_IQ_CORRELATION, *pn.VERIFICATION_HQ_AVERAGE.values()}
    for table in (pn.VERIFICATION, pn.IJB_TAR_1E4, pn.TINYFACE):
        for per_head in table.values():
            values.update(per_head.values())
    return values


def _literals(path: Path) -> tuple[list[float], list[str]]:
    """Numeric constants and string constants (docstrings excluded) of a Python file; a template is one string."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return [], [text]
    tree = ast.parse(text)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    numbers, strings = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                numbers.append(float(node.value))
            elif isinstance(node.value, str):
                strings.append(node.value)
    return numbers, strings


@pytest.mark.parametrize("module", QUOTING)
def test_no_reported_number_is_a_literal(module):
    numbers, strings = _literals(SRC / module)
    reported = _reported()
    assert not [v for v in numbers if v in reported], f"{module} hard-codes a paper number; import it from paper_numbers"
    for value in reported:
        for shown in {f"{value:g}", f"{value:.2f}"}:
            pattern = re.compile(rf"(?<![\d.]){re.escape(shown)}(?!\d)")
            hits = [s for s in strings if pattern.search(s)]
            assert not hits, f"{module} writes the paper's {shown} in a string: {hits[0][:120]!r}"


def test_paper_settings_are_imported_not_redefined():
    from marginlab.analysis.claims import benchmark_claims
    from marginlab.report import render

    assert benchmark_claims.PAPER_BEST is pn.PAPER_BEST
    assert render.PAPER_SCALE is pn.PAPER_SCALE
    for module in ("analysis/verdict_rules.py", "analysis/claim_parts.py", *CLAIM_MODULES, "report/render.py",
                   "report/scale_banner.py"):
        tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
        assigned = {t.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
        assert not assigned & set(pn.__all__), f"{module} redefines {sorted(assigned & set(pn.__all__))}"
    for module in ("report/render.py", "report/scale_banner.py"):
        _, strings = _literals(SRC / module)
        assert not [s for s in strings if re.search(rf"\b{pn.PAPER_EPOCHS}[ -]epoch", s)], module


def test_quoted_numbers_reach_the_outputs():
    from marginlab.analysis.claims.benchmark_claims import claim_ablations, claim_baselines
    from marginlab.analysis.figure_specs import FIGURES

    caption = FIGURES["correlation_vs_progress.png"].caption
    assert f"{pn.FIG2_NORM_IQ_CORRELATION}" in caption
    import pandas as pd

    empty = pd.DataFrame(columns=["label", "head", "protocol", "quality", "mean", "std", "n_seeds", "se"])
    c5 = claim_baselines(empty, None, [])
    assert f"{pn.IJB_TAR_1E4['adaface']['ijbc']:.2f}" in c5["paper"] and f"{pn.VERIFICATION['adaface']['lfw']:.2f}" in c5["paper"]
    c3 = claim_ablations(pd.DataFrame(), empty)
    assert f"m = {pn.PAPER_BEST['m']:g}" in c3["statement"]
