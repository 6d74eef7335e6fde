"""One stage graph for two runners: dvc.yaml is the definition, Snakemake derives its rules from it.

Modules: ``graph`` (DVC's resolved stages as a runner-neutral graph; ``python -m marginlab.pipeline.graph
--check-deps``), ``deps`` (each stage's code dependencies from its import graph), ``fix_deps`` (writes them
into dvc.yaml), ``stage_params`` (each stage's ``params:`` from its declaration).
"""

__all__ = ["PipelineStage", "load_stages", "rule_name", "stage_edges"]


def __getattr__(name: str):
    # Lazy, so ``python -m marginlab.pipeline.graph`` does not import graph twice (runpy warns).
    if name in __all__:
        from marginlab.pipeline import graph

        return getattr(graph, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
