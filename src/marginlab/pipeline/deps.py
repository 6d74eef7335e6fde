"""A stage's code dependencies, derived from its import graph, against the ones dvc.yaml declares.

DVC reruns a stage when a declared dependency changes, so every file a stage's code can execute must
be declared: the stage's module (``python -m marginlab train RUN`` → ``marginlab.__main__`` and
``marginlab.stages.train``; a script ``python stages/x.py`` → ``stages/x.py``) and, transitively, every
module of the package it imports. :func:`import_closure` finds them statically (``ast``, no code
is run):

- ``import a.b``, ``from a.b import c`` (``c`` a submodule counts as a module), relative imports, and
  imports anywhere in a module (inside functions too: this code base imports lazily); only the body of
  ``if TYPE_CHECKING:`` is skipped, as it never runs;
- importing ``pkg.a.b`` runs ``pkg/__init__.py`` and ``pkg/a/__init__.py`` too;
- ``importlib.import_module("pkg.x")`` with a literal name imports that module; any other dynamic import
  (a computed ``import_module`` / ``__import__`` argument, ``pkgutil.iter_modules`` / ``walk_packages``)
  counts as importing every module of the calling module's own package (a registry importing its
  plug-ins), except in :data:`COMMAND_LOADER`, whose one dynamic import loads the stage that the command
  names (:func:`stage_entries` lists that stage's module);
- the non-Python files of an imported package's folder (templates, ...) are read by its code, so they
  count too.

Only modules of the package itself (``marginlab``) are followed; third-party code is pinned elsewhere.

:func:`check_stage_deps` compares the result with a stage's declared deps (a folder dep covers every
file under it): *missing* files make the check fail (a change to them would not rerun the stage);
*unused* code deps (a declared file or folder under the code roots that the stage never imports) and
folder deps broader than the import graph are reported as information (they only cause needless
reruns). :func:`minimal_deps` gives the smallest dep list covering a closure (exactly, except that the
ground-floor package :data:`WHOLE_PACKAGES` is declared whole), which :mod:`marginlab.pipeline.fix_deps`
writes into ``dvc.yaml``.
"""

from __future__ import annotations

import ast
import functools
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

PACKAGE = "marginlab"
#: The stage registry of ``python -m marginlab <stage>``: it imports the named stage's module, not all.
COMMAND_LOADER = f"{PACKAGE}.stages"
#: Sub-packages declared whole (one folder dep) by :func:`minimal_deps` as soon as a stage imports any of
#: their modules: the torch-free ground floor every stage imports (command line, params schema, registries,
#: layouts, paths, I/O). Declaring a file a stage does not import only reruns that stage needlessly. A
#: ``meta.deps_exempt`` path must lie outside them (declared whole, it would be covered again).
WHOLE_PACKAGES = ("core",)
_IGNORED_DIRS = {"__pycache__"}
_IGNORED_SUFFIXES = {".pyc", ".pyo"}


# --------------------------------------------------------------------------------------- modules
def package_dir(repo_root: str | Path, package: str = PACKAGE) -> Path:
    """The package's folder in a repository: ``src/<package>`` or ``<package>``."""
    root = Path(repo_root)
    for cand in (root / "src" / package, root / package):
        if (cand / "__init__.py").is_file():
            return cand
    raise FileNotFoundError(f"package {package!r} not found under {root} (src/{package} or {package})")


def module_file(modname: str, search_dir: Path) -> Path | None:
    """The file that defines ``modname`` below ``search_dir`` (``a.b`` → ``a/b.py`` or ``a/b/__init__.py``)."""
    base = search_dir.joinpath(*modname.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


@dataclass
class ModuleImports:
    names: set[str] = field(default_factory=set)  # absolute candidate module names
    dynamic: bool = False  # imports computed at run time (→ its whole package)


def parse_imports(source: str, modname: str | None, is_package: bool, filename: str = "<module>") -> ModuleImports:
    """Absolute names a module's source may import (candidates: ``from a import b`` gives ``a`` and ``a.b``).

    ``modname`` is the module's dotted name (``None`` for a script outside the package); it resolves
    relative imports.
    """
    tree = ast.parse(source, filename=filename)
    out = ModuleImports()
    if modname is None:
        pkg_parts: list[str] = []
    else:
        pkg_parts = modname.split(".") if is_package else modname.split(".")[:-1]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                if up > len(pkg_parts) or (not pkg_parts and modname is None):
                    base_parts: list[str] | None = None  # beyond the top: Python raises; nothing to follow
                else:
                    base_parts = pkg_parts[: len(pkg_parts) - up]
                if base_parts is None:
                    pass
                else:
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                    if base:
                        out.names.add(base)
                        out.names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
            elif node.module:
                out.names.add(node.module)
                out.names.update(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call):
            name = _call_name(node.func)
            if name in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                    out.names.add(arg.value)
                else:
                    out.dynamic = True
            elif name in ("iter_modules", "walk_packages"):
                out.dynamic = True
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _package_files(pkg_init: Path, *, recursive: bool) -> list[Path]:
    """Files of the package whose ``__init__.py`` is ``pkg_init``.

    Not recursive: its non-Python data files, in its folder and in sub-folders that are not packages.
    Recursive: every file of the package and its sub-packages.
    """
    files = []
    stack = [pkg_init.parent]
    while stack:
        folder = stack.pop()
        for p in sorted(folder.iterdir()):
            if p.is_dir():
                if p.name in _IGNORED_DIRS or p.name.startswith("."):
                    continue
                if recursive or not (p / "__init__.py").is_file():
                    stack.append(p)
            elif p.suffix not in _IGNORED_SUFFIXES and (recursive or p.suffix != ".py"):
                files.append(p)
    return files


def _modname_of(path: Path, search_dir: Path) -> str:
    rel = path.relative_to(search_dir).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _stamp(path: Path) -> tuple[int, int]:
    """(mtime in ns, size) of a file: the cache key of its parsed imports (an edited file is parsed again)."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4096)
def _file_imports(path: str, modname: str | None, is_package: bool, mtime_ns: int, size: int) -> ModuleImports:
    """:func:`parse_imports` of one file, parsed once per (file, version): a check of every stage (one
    closure per run) otherwise parses each module dozens of times."""
    return parse_imports(Path(path).read_text(encoding="utf-8"), modname, is_package, filename=path)


def import_closure(entry: str | Path, repo_root: str | Path, package: str = PACKAGE) -> set[str]:
    """Repository-relative POSIX paths of every file ``entry`` can run or read through its imports.

    ``entry`` is a script path (``stages/train.py``) or a module name of the package (``marginlab.x``).
    """
    root = Path(repo_root).resolve()
    pkg = package_dir(root, package)
    search = pkg.parent
    files: set[Path] = set()
    todo: list[tuple[Path, str | None]] = []
    where: dict[str, Path | None] = {}  # module name → its file, looked up once per closure

    def add_module(name: str) -> None:
        if name != package and not name.startswith(package + "."):
            return
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            dotted = ".".join(parts[:i])
            if dotted not in where:
                where[dotted] = module_file(dotted, search)
            path = where[dotted]
            if path is None:
                return  # not a module (an attribute of the parent: ``from pkg.a import function``)
            if path not in files:
                files.add(path)
                todo.append((path, ".".join(parts[:i])))

    entry_path = root / str(entry)
    if str(entry).endswith(".py") and entry_path.is_file():
        files.add(entry_path)
        todo.append((entry_path, None))
    else:
        add_module(str(entry))
        if not files:
            raise FileNotFoundError(f"{entry} is neither a script nor a module of {package!r} in {root}")
    while todo:
        path, modname = todo.pop()
        is_pkg = path.name == "__init__.py"
        found = _file_imports(str(path), modname, is_pkg, *_stamp(path))
        for name in sorted(found.names):
            add_module(name)
        if is_pkg:
            files.update(_package_files(path, recursive=False))  # templates and other package data
        if found.dynamic and modname is not None and modname != f"{package}.stages":
            own = modname if is_pkg else modname.rpartition(".")[0]
            init = module_file(own, search)
            if init is not None and init.name == "__init__.py":
                for f in _package_files(init, recursive=True):
                    if f.suffix == ".py":
                        add_module(_modname_of(f, search))
                    else:
                        files.add(f)
    return {p.relative_to(root).as_posix() for p in files}


def stage_entries(cmd: str, package: str = PACKAGE) -> list[str]:
    """What a stage command runs: scripts (``python stages/x.py ...``) and modules (``python -m m``);
    ``python -m marginlab <stage>`` runs ``marginlab.__main__`` and the module of that stage."""
    entries: list[str] = []
    for part in cmd.replace("&&", ";").replace("||", ";").split(";"):
        try:
            tokens = shlex.split(part, comments=True)
        except ValueError:
            tokens = part.split()
        if not tokens or not PurePosixPath(tokens[0]).name.startswith("python"):
            continue
        rest = tokens[1:]
        while rest:
            tok = rest.pop(0)
            if tok == "-m" and rest:
                module = rest.pop(0)
                if module == package:
                    entries.append(f"{package}.__main__")
                    if rest and not rest[0].startswith("-"):
                        entries.append(f"{COMMAND_LOADER}.{rest[0]}")
                else:
                    entries.append(module)
                break
            if tok.endswith(".py"):
                entries.append(tok)
                break
            if not tok.startswith("-"):
                break
    return entries


# --------------------------------------------------------------------------------------- check
def covers(dep: str, path: str) -> bool:
    """A dep covers itself and, as a folder, everything under it."""
    d, p = PurePosixPath(dep), PurePosixPath(path)
    return p == d or d in p.parents


def overlaps(a: str, b: str) -> bool:
    """One path covers the other (a dep and a code root, either way round)."""
    return covers(a, b) or covers(b, a)


def _files_under(root: Path, dep: str) -> list[str]:
    path = root / dep
    if path.is_file():
        return [dep]
    if not path.is_dir():
        return []
    out = []
    for p in path.rglob("*"):
        if p.is_file() and p.suffix not in _IGNORED_SUFFIXES and not (_IGNORED_DIRS & set(p.relative_to(path).parts)):
            out.append(p.relative_to(root).as_posix())
    return sorted(out)


@dataclass
class StageDeps:
    stage: str  # DVC name; a foreach group with identical results is reported once (``train@*``)
    entries: list[str]
    code_roots: list[str]  # the package folder and the scripts' folders: deps there are code deps
    closure: list[str]  # every file the stage's code runs or reads
    declared: list[str]  # the stage's declared code deps (under the code roots)
    missing: list[str]  # closure files no declared dep covers (the check fails)
    unused: list[str]  # declared code deps covering no closure file (needless reruns)
    broader: dict[str, list[str]]  # folder dep → files under it the stage does not import (information)

    @property
    def ok(self) -> bool:
        return not self.missing


def check_stage_deps(name: str, cmd: str, deps: Iterable[str], repo_root: str | Path,
                     package: str = PACKAGE, exempt: Iterable[str] = ()) -> StageDeps:
    """Compare one stage's declared file deps with the import closure of its command.

    ``exempt`` (the stage's ``meta.deps_exempt`` in dvc.yaml) lists code paths the stage imports but whose
    changes cannot change its outputs; they are left out of the closure. The only use today: the params
    schema (:mod:`marginlab.core.config`) imports the heads' declarations (``head_specs.py``) to validate ``heads`` and
    ``runs``, so every stage imports them, but prepare, brisque_model and quality compute nothing with a
    head — without the exemption, changing a head's default would re-prepare and re-score the dataset.
    """
    root = Path(repo_root).resolve()
    entries = stage_entries(cmd)
    closure: set[str] = set()
    for e in entries:
        closure |= import_closure(e, root, package)
    exempt = [str(x).rstrip("/") for x in exempt]
    closure = {f for f in closure if not any(covers(x, f) for x in exempt)}
    pkg_rel = package_dir(root, package).relative_to(root).as_posix()
    code_roots = {pkg_rel} | {PurePosixPath(e).parent.as_posix() for e in entries if e.endswith(".py")}
    code_roots.discard(".")
    deps = list(dict.fromkeys(deps))
    declared = [d for d in deps if d.endswith(".py") or any(overlaps(d, r) for r in code_roots)]
    missing = sorted(f for f in closure if not any(covers(d, f) for d in deps))
    unused = [d for d in declared if not any(covers(d, f) for f in closure)]
    broader = {}
    wholes = whole_package_dirs(root, package)
    for d in declared:
        if d in unused or (root / d).is_file() or d in wholes:
            continue
        extra = [f for f in _files_under(root, d) if f not in closure]
        if extra:
            broader[d] = extra
    return StageDeps(name, entries, sorted(code_roots), sorted(closure), declared, missing, unused, broader)


def whole_package_dirs(repo_root: str | Path, package: str = PACKAGE) -> list[str]:
    """Repository-relative folders of the :data:`WHOLE_PACKAGES` that exist in ``repo_root``."""
    root = Path(repo_root).resolve()
    try:
        pkg = package_dir(root, package)
    except FileNotFoundError:
        return []
    return [(pkg / w).relative_to(root).as_posix() for w in WHOLE_PACKAGES if (pkg / w / "__init__.py").is_file()]


def minimal_deps(closure: Iterable[str], repo_root: str | Path, first: Iterable[str] = (),
                 package: str = PACKAGE) -> list[str]:
    """Fewest paths covering ``closure``: a folder when all its files are in it, else its files; a
    :data:`WHOLE_PACKAGES` folder whole when ``closure`` has any file of it.

    Sorted, with the paths in ``first`` (the stage scripts) ahead of the others.
    """
    root = Path(repo_root).resolve()
    closure = set(closure)
    for whole in whole_package_dirs(root, package):
        if any(covers(whole, f) for f in closure):
            closure.update(_files_under(root, whole))
    chosen: list[str] = []

    def walk(rel: str) -> bool:  # True: every file under rel is in the closure
        files = _files_under(root, rel)
        return bool(files) and all(f in closure for f in files)

    for f in sorted(closure):
        # climb while the parent folder is fully used
        best = f
        parent = PurePosixPath(f).parent
        while parent.as_posix() not in (".", "") and walk(parent.as_posix()):
            best = parent.as_posix()
            parent = parent.parent
        if not any(covers(c, best) for c in chosen):
            chosen = [c for c in chosen if not covers(best, c)] + [best]
    first = [f for f in first if f in chosen]
    return first + sorted(c for c in chosen if c not in first)


def check_repo(repo_root: str | Path = ".", package: str = PACKAGE) -> list[StageDeps]:
    """Check every stage of ``repo_root/dvc.yaml`` (as DVC resolves it); foreach groups collapse when equal."""
    from marginlab.pipeline.graph import load_stages

    root = Path(repo_root).resolve()
    results: list[StageDeps] = []
    for st in load_stages(root):
        res = check_stage_deps(st.name, st.cmd, st.inputs, root, package,
                               exempt=(st.meta or {}).get("deps_exempt") or ())
        group = st.name.split("@", 1)[0]
        if "@" in st.name and results and results[-1].stage.split("@", 1)[0] == group:
            prev = results[-1]
            same = (prev.closure, prev.missing, prev.unused, prev.broader) == (res.closure, res.missing, res.unused, res.broader)
            if same:
                prev.stage = f"{group}@*"
                continue
        results.append(res)
    return results


def format_report(results: list[StageDeps], *, suggest: bool = False, repo_root: str | Path = ".") -> str:
    lines = []
    for r in results:
        status = "ok" if r.ok else f"MISSING {len(r.missing)}"
        lines.append(f"{r.stage}: {status} ({len(r.closure)} files imported from {', '.join(r.entries) or 'no script'})")
        for f in r.missing:
            lines.append(f"  missing: {f}")
        for d in r.unused:
            lines.append(f"  unused (not imported; needless reruns): {d}")
        for d, extra in r.broader.items():
            shown = ", ".join(extra[:4]) + (f", ... ({len(extra)} files)" if len(extra) > 4 else "")
            lines.append(f"  broader than imported (information): {d}: {shown}")
        if suggest:
            lines.append("  derived code deps:")
            lines.extend(f"    - {d}" for d in minimal_deps(r.closure, repo_root, r.entries))
    bad = [r.stage for r in results if not r.ok]
    if bad:
        lines.append(f"code deps: FAIL: {', '.join(bad)} miss dependencies "
                     "(python -m marginlab.pipeline.graph --fix-deps rewrites them from the import graph)")
    else:
        lines.append("code deps: every stage declares every file it imports")
    return "\n".join(lines)
