"""The report side of the study: Fig. 3 (GST panels) and the self-contained HTML report.

- :mod:`.gst_figures` — the ``gst`` stage: |GST| maps and curves of the margin heads (paper Fig. 3),
  computed with :mod:`marginlab.analysis.gst`, written to ``analysis/gst/``;
- :mod:`.inputs` — reading the stage outputs, with "not available: <why>" for optional ones;
- :mod:`.figures` — figures the report draws itself and PNG data URIs;
- :mod:`.provenance` — git commit, params, dvc.lock input hashes, versions, hardware, wall times;
- :mod:`.render` — ``render_report(root=".", out="reports/report.html")``.

Submodules are imported lazily so that ``stages/gst.py`` does not load Jinja2 and the report does not
load the GST code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportInputError", "render_report", "write_gst_outputs"]


def __getattr__(name: str) -> Any:
    if name == "render_report":
        from marginlab.report.render import render_report

        return render_report
    if name == "ReportInputError":
        from marginlab.report.inputs import ReportInputError

        return ReportInputError
    if name == "write_gst_outputs":
        from marginlab.report.gst_figures import write_gst_outputs

        return write_gst_outputs
    raise AttributeError(f"module 'marginlab.report' has no attribute {name!r}")
