"""Analyses of trained and untrained models that feed the report's figures.

Submodules (imported explicitly, so one analysis' dependencies never load with another's):

- :mod:`marginlab.analysis.gst` — gradient scaling term of every margin head on the paper's
  two-class toy (Fig. 3), by autograd through the real head code.
"""
