"""One stage graph for two runners: dvc.yaml is the definition, Snakemake derives its rules from it."""

from marginlab.pipeline.graph import PipelineStage, load_stages, rule_name, stage_edges

__all__ = ["PipelineStage", "load_stages", "rule_name", "stage_edges"]
