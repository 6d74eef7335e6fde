"""The HTML report of the study: it reads the stage outputs and renders them, nothing else.

- :mod:`.inputs` — reading the stage outputs (``analysis/``, ``analysis/gst/`` written by the ``gst``
  stage from :mod:`marginlab.analysis.gst_study`, ...), with "not available: <why>" for optional ones;
- :mod:`.plots` — figures the report draws itself and PNG data URIs; :mod:`.figure_list` — which figure
  files each section shows, with captions (the analysis figures from their registry);
- :mod:`.claims_section` — every claim of ``claims.json``, part by part; :mod:`.scale_banner` — our scale
  against the paper's;
- :mod:`.evidence` — a claim's nested numbers laid out as key-values and tables;
- :mod:`.provenance` — git commit, params, dvc.lock input hashes, versions, hardware, wall times;
- :mod:`.render` — ``run_report(root=".", out="reports/report.html")``.

Submodules are imported lazily so that importing the package does not load Jinja2.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportInputError", "run_report"]


def __getattr__(name: str) -> Any:
    if name == "run_report":
        from marginlab.report.render import run_report

        return run_report
    if name == "ReportInputError":
        from marginlab.report.inputs import ReportInputError

        return ReportInputError
    raise AttributeError(f"module 'marginlab.report' has no attribute {name!r}")
