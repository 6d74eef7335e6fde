"""Analyses of trained and untrained models that feed the report's figures and tables.

Submodules are imported explicitly (``from marginlab.analysis import gst``), so one analysis'
dependencies never load with another's. Among them:

- :mod:`marginlab.analysis.gst` — gradient scaling term of every margin head on the paper's
  two-class toy (Fig. 3), by autograd through the real head code.
"""
