"""Analyses of trained and untrained models that feed the report's figures and tables.

Submodules are imported explicitly (``from marginlab.analysis import gst``), so one analysis'
dependencies never load with another's:

- :mod:`~marginlab.analysis.gst` — gradient scaling term of every margin head on the paper's two-class
  toy (Fig. 3), by autograd through the real head code; the hard-versus-easy emphasis.
- :mod:`~marginlab.analysis.gst_study` — the ``gst`` stage: Fig. 3 panels from the head registry, the
  GST table, its checks and the stage's outputs (``analysis/gst``).
- :mod:`~marginlab.analysis.collect` — every run's outputs (probe, metrics, live, summaries) as tidy frames.
- :mod:`~marginlab.analysis.correlation` — Pearson/Spearman with bootstrap CIs (Fig. 2), P_yi non-linearity;
  the identity-cluster bootstrap behind the intervals is :mod:`~marginlab.analysis.cluster_bootstrap`.
- :mod:`~marginlab.analysis.augmentation` — share of augmented samples per feature-norm bin.
- :mod:`~marginlab.analysis.significance` — seed aggregation and paired tests.
- :mod:`~marginlab.analysis.tables` — Table 1 (ablations) and the main comparison.
- :mod:`~marginlab.analysis.verdict_rules` — the decision rules of the verdicts on the paper's claims; the claims
  with their numbers: :mod:`~marginlab.analysis.claims`, one registered module each (1 and 4, 2, 3 and 5 today),
  read one evidence object and are assembled by :mod:`~marginlab.analysis.claim_parts`.
- :mod:`~marginlab.analysis.figures` — Fig. 2 panels, correlation vs epoch, augmentation bars, training
  curves; :mod:`~marginlab.analysis.gst_figures` — the Fig. 3 GST maps and curves.
- :mod:`~marginlab.analysis.paper_numbers` — the paper's published numbers, with sources.
- :mod:`~marginlab.analysis.stage` — the analysis stage (``analyze``) and its output schema.
"""
