"""The params keys a stage reads, recorded while it runs, against the keys dvc.yaml declares for it.

DVC reruns a stage when one of its declared params changes, so every key the stage reads must be
declared (a declared key covers its sub-keys: ``train`` covers ``train.lr``). What a stage reads is
observed, not guessed: :class:`ReadTracker` instruments a validated :class:`~marginlab.config.Params`
so that every value taken out of it records its dotted key path:

- a field that holds a value (``params.train.lr``) records ``train.lr``; one that holds a section or a
  mapping records nothing until something is read from it;
- mapping entries record their key: ``params.runs[name].head`` → ``runs.<name>.head``, ``name in
  params.runs`` → ``runs.<name>``; iterating a mapping, its length or its keys records the mapping;
- taking a section whole (``model_dump``, ``model_copy``, ``repr``, a copy) records the section.

``python -m marginlab.pipeline.params_usage --out FILE -- -m marginlab <stage> ARGS`` (or ``-- SCRIPT.py
ARGS``) runs one stage this way (every Params that ``marginlab.config`` validates is tracked) and writes the keys it read, its
exit status and the package modules it loaded (a run-time check of the static import graph in
:mod:`marginlab.pipeline.deps`). :func:`check_params` runs the stages of a repository in order through
it and compares with the keys DVC resolves for each stage (``${key}``/``${item.head}`` expanded).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WHOLE = ""  # the key path of "every key" (the whole params file)

# Attribute names through which a pydantic model is taken whole.
_WHOLE_READS = frozenset({
    "model_dump", "model_dump_json", "model_copy", "dict", "json", "copy", "__copy__", "__deepcopy__",
    "__getstate__", "__reduce__", "__reduce_ex__", "__repr_args__", "__iter__", "__eq__",
})


def dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


class _TrackedDict(dict):
    """A mapping field of a tracked model: entry reads record ``<path>.<key>``; whole reads ``<path>``."""

    __slots__ = ("_path", "_tracker")

    def __getitem__(self, key):
        return self._tracker._read(self._path + (key,), dict.__getitem__(self, key))

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return self[key]
        self._tracker._record(self._path + (key,))
        return default

    def __contains__(self, key):
        self._tracker._record(self._path + (key,))
        return dict.__contains__(self, key)

    def _whole(self):
        self._tracker._record(self._path)

    def __iter__(self):
        self._whole()
        return dict.__iter__(self)

    def __len__(self):
        self._whole()
        return dict.__len__(self)

    def keys(self):
        self._whole()
        return dict.keys(self)

    def values(self):
        self._whole()
        return dict.values(self)

    def items(self):
        self._whole()
        return dict.items(self)

    def copy(self):
        self._whole()
        return dict(dict.items(self))

    def __eq__(self, other):
        self._whole()
        return dict.__eq__(self, other)

    __hash__ = None

    def __repr__(self):
        self._whole()
        return dict.__repr__(self)

    def __reduce_ex__(self, protocol):
        self._whole()
        return (dict, (dict(dict.items(self)),))


class ReadTracker:
    """Record the key paths read from the :class:`Params` objects it :meth:`track`\\ s.

    Instruments the pydantic classes it meets (their ``__getattribute__``) until :meth:`close`;
    instances that are not tracked are unaffected.
    """

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self._paths: dict[int, tuple] = {}
        self._keep: list[Any] = []  # tracked objects stay alive, so their ids stay theirs
        self._patched: list[type] = []

    # ------------------------------------------------------------------ recording
    def _record(self, path: tuple) -> None:
        self.reads.add(dotted(path))

    def _read(self, path: tuple, value: Any) -> Any:
        """A value taken from ``path``: sections and mappings are followed, anything else recorded."""
        if id(value) not in self._paths:
            self._record(path)
        return value

    # ------------------------------------------------------------------ instrumenting
    def track(self, params: Any) -> Any:
        """Track ``params`` (a pydantic model) in place; return it."""
        if id(params) not in self._paths:
            self._register(params, ())
        return params

    def _register(self, obj: Any, path: tuple) -> Any:
        from pydantic import BaseModel

        if isinstance(obj, BaseModel):
            self._paths[id(obj)] = path
            self._keep.append(obj)
            self._patch(type(obj))
            values = object.__getattribute__(obj, "__dict__")
            for name in type(obj).model_fields:
                if name in values:
                    values[name] = self._register(values[name], path + (name,))
            return obj
        if isinstance(obj, dict) and not isinstance(obj, _TrackedDict):
            tracked = _TrackedDict({k: self._register(v, path + (k,)) for k, v in obj.items()})
            tracked._tracker, tracked._path = self, path
            self._paths[id(tracked)] = path
            self._keep.append(tracked)
            return tracked
        return obj  # values and lists are read whole

    def _patch(self, cls: type) -> None:
        if "__getattribute__" in cls.__dict__:
            return
        tracker = self

        def __getattribute__(obj, name):
            value = object.__getattribute__(obj, name)
            path = tracker._paths.get(id(obj))
            if path is None:
                return value
            if name in type(obj).model_fields:
                return tracker._read(path + (name,), value)
            if name in _WHOLE_READS:
                tracker._record(path)
            return value

        cls.__getattribute__ = __getattribute__
        self._patched.append(cls)

    def close(self) -> None:
        for cls in self._patched:
            if "__getattribute__" in cls.__dict__:
                delattr(cls, "__getattribute__")
        self._patched.clear()

    def __enter__(self) -> ReadTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------- one stage
class _TrackConfig:
    """Meta path finder: when ``marginlab.config`` is imported, wrap its ``validate_params``."""

    def __init__(self, tracker: ReadTracker, module: str = "marginlab.config"):
        self.tracker, self.module = tracker, module

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader, tracker = spec.loader, self.tracker
        exec_module = loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            validate = module.validate_params

            def validate_params(*args, **kwargs):
                return tracker.track(validate(*args, **kwargs))

            module.validate_params = validate_params  # load_params calls it through the module globals

        loader.exec_module = exec_and_wrap
        return spec


def run_script(argv: list[str], package: str = "marginlab") -> dict[str, Any]:
    """Run ``argv`` (``-m MODULE ARGS`` or ``SCRIPT.py ARGS``) as ``__main__`` with tracked params, in this process.

    Returns ``{"exit": status, "reads": [...], "modules": [files of package modules it loaded]}``.
    Run it in a fresh interpreter (the CLI below): ``marginlab.config`` must not be imported yet.
    """
    import runpy

    if "marginlab.config" in sys.modules:
        raise RuntimeError("run_script needs a fresh interpreter (marginlab.config is already imported)")
    before = set(sys.modules)
    tracker = ReadTracker()
    finder = _TrackConfig(tracker)
    sys.meta_path.insert(0, finder)
    old_argv = sys.argv
    module = argv[1] if argv[:1] == ["-m"] and len(argv) > 1 else None
    sys.argv = [module, *argv[2:]] if module else list(argv)
    status: Any = 0
    try:
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as err:
        status = err.code
    except Exception:  # noqa: BLE001 - the stage crashed: still report what it read up to there
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        sys.argv = old_argv
        sys.meta_path.remove(finder)
        tracker.close()
    modules = sorted(
        os.path.abspath(m.__file__) for name, m in list(sys.modules.items())
        if name not in before and (name == package or name.startswith(package + "."))
        and getattr(m, "__file__", None)
    )
    return {"exit": status if isinstance(status, int) else (0 if status is None else 1),
            "reads": sorted(tracker.reads), "modules": modules}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marginlab.pipeline.params_usage",
                                     description="Run a stage script and record the params keys it reads.")
    parser.add_argument("--out", required=True, help="JSON file for {exit, reads, modules}")
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- -m marginlab <stage> ARGS (or -- SCRIPT.py ARGS)")
    args = parser.parse_args(argv)
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("give the stage script after --")
    result = run_script(script)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------------------- check
def covered(read: str, declared: Iterable[str]) -> bool:
    """A declared key covers itself and its sub-keys; :data:`WHOLE` covers everything."""
    return any(d == WHOLE or read == d or read.startswith(d + ".") for d in declared)


@dataclass
class StageParams:
    stage: str
    exit: int
    reads: list[str]
    declared: list[str]  # the stage's params keys ("": the whole file)
    in_definition: list[str]  # keys interpolated in its cmd/deps/outs (a change reruns it too)
    missing: list[str]  # read but not declared: changing them does not rerun the stage
    unread: list[str]  # declared, never read in this run (information: may be read on other paths)
    unexpected_modules: list[str] = field(default_factory=list)  # loaded at run time, not in the import graph
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """Every key read is declared and the static import graph saw every module it loaded."""
        return not self.missing and not self.unexpected_modules


def declared_params(stage) -> list[str]:
    """Keys a resolved :class:`~marginlab.pipeline.graph.PipelineStage` declares (``""``: whole file)."""
    return ([WHOLE] if stage.whole_params else []) + sorted(stage.params)


_INTERP = re.compile(r"\$\{\s*([^}\s]+)\s*\}")


def interpolated_keys(dvc_yaml: dict, stage_name: str) -> list[str]:
    """Params keys a stage's definition interpolates outside ``params:`` (``${data.prepared_dir}/x``).

    Changing one changes the stage's command, deps or outs, so DVC reruns it: they count as declared.
    In a ``foreach: ${runs}`` stage, ``${item.head}`` of stage ``name@k`` is ``runs.k.head``; ``${key}``
    is the stage's own name.
    """
    group, _, key = stage_name.partition("@")
    stage = (dvc_yaml.get("stages") or {}).get(group) or {}
    source = None
    body = stage
    if "foreach" in stage:
        m = _INTERP.fullmatch(str(stage["foreach"]).strip())
        source = m.group(1) if m else None
        body = stage.get("do") or {}
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(k)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            for expr in _INTERP.findall(node):
                if expr == "key":
                    continue
                if expr == "item" or expr.startswith("item."):
                    if source and key:
                        found.append(".".join([source, key, *expr.split(".")[1:]]))
                    continue
                found.append(expr)

    walk({k: v for k, v in body.items() if k not in ("params", "meta")})
    return sorted(set(found))


def run_stage_tracked(repo_root: str | Path, cmd: str, out: Path, env: dict[str, str] | None = None,
                      timeout: float = 900) -> dict[str, Any]:
    """Run a stage command (``python -m marginlab <stage> ARGS``, or ``python <script>.py ARGS``) in
    ``repo_root`` through :func:`main`."""
    tokens = shlex.split(cmd, comments=True)
    module_cmd = len(tokens) >= 3 and tokens[1] == "-m"
    if not tokens or not Path(tokens[0]).name.startswith("python") or not (module_cmd or (len(tokens) >= 2 and tokens[1].endswith(".py"))):
        raise ValueError(f"not a 'python -m <module> ...' or 'python <script>.py ...' stage command: {cmd!r}")
    argv = [sys.executable, "-m", "marginlab.pipeline.params_usage", "--out", str(out), "--", *tokens[1:]]
    proc = subprocess.run(argv, cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{cmd}: tracking runner failed ({proc.returncode})\n{proc.stderr[-4000:]}")
    result = json.loads(out.read_text())
    result["stderr"] = proc.stderr
    return result


def check_params(repo_root: str | Path, stages: Iterable[str] | None = None, *, extra_args: dict[str, list[str]] | None = None,
                 env: dict[str, str] | None = None, workdir: str | Path | None = None) -> list[StageParams]:
    """Run ``stages`` (DVC names, in the given order; default: all) of ``repo_root`` tracked and compare.

    ``extra_args`` appends CLI arguments per stage name (e.g. ``--no-progress``). Stages run for real:
    use a throw-away copy of the repository with a small params.yaml.
    """
    import tempfile

    import yaml

    from marginlab.pipeline.deps import check_stage_deps
    from marginlab.pipeline.graph import load_stages

    root = Path(repo_root).resolve()
    resolved = {s.name: s for s in load_stages(root)}
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text()) or {}
    names = list(resolved) if stages is None else list(stages)
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for i, name in enumerate(names):
            st = resolved[name]
            cmd = st.cmd + "".join(f" {shlex.quote(a)}" for a in (extra_args or {}).get(name, []))
            res = run_stage_tracked(root, cmd, Path(tmp) / f"{i}.json", env=env)
            declared = declared_params(st)
            in_definition = interpolated_keys(dvc_yaml, name)
            reads = res["reads"]
            closure = set(check_stage_deps(name, st.cmd, [], root).closure)
            loaded = {Path(m).resolve().relative_to(root).as_posix() if Path(m).resolve().is_relative_to(root) else m
                      for m in res["modules"]}
            results.append(StageParams(
                stage=name, exit=res["exit"], reads=reads, declared=declared, in_definition=in_definition,
                missing=[r for r in reads if not covered(r, declared + in_definition)],
                unread=[] if WHOLE in declared else
                [d for d in declared if not any(r == d or r.startswith(d + ".") or d.startswith(r + ".") for r in reads)],
                unexpected_modules=sorted(loaded - closure),
            ))
            results[-1].stderr = res["stderr"]
    return results


def format_params_report(results: list[StageParams]) -> str:
    lines = []
    for r in results:
        status = "ok" if r.ok else "FAIL"
        lines.append(f"{r.stage}: {status} (exit {r.exit}; reads {', '.join(r.reads) or 'nothing'})")
        if r.exit != 0:
            lines.append(f"  stage failed: {(r.stderr.strip().splitlines() or [''])[-1]}")
        lines.extend(f"  missing param: {k}" for k in r.missing)
        lines.extend(f"  declared, not read in this run (information): {k}" for k in r.unread)
        lines.extend(f"  loaded but not in the static import graph: {m}" for m in r.unexpected_modules)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
