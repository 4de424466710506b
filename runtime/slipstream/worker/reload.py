"""Swapping code generations inside a live process.

A generation is a directory of the project's files. Each process imports the project from a
folder of its own, ``<gens>/.live-<pid>``, whose files (hard links of the generation's) a switch
updates in place, only those that changed: packages' ``__path__``, modules' ``__file__`` and any
path computed from them at import (``Path(__file__).resolve().parent`` included) keep meaning
"the code this process runs now", and no process ever reads from a generation directory the
store may drop. Switching re-executes only the changed modules, the modules that import them
(found from their import statements) and the modules that read a changed data file (seen
through an audit hook on open()); everything else, and every object held by keep(), stays.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType

__all__ = [
    "CodeLoader",
    "ReloadReport",
    "module_name",
    "module_for",
    "import_root",
    "clean_paths",
    "shadowed_stdlib",
    "LIVE_PREFIX",
    "RESTART_MARKER",
]

# A module that sets this at top level asks to be reloaded by replacing the worker
# (for modules holding C-extension or process-wide state that re-execution would corrupt).
RESTART_MARKER = "SLIPSTREAM_RELOAD"
LIVE_PREFIX = ".live-"  # <gens>/.live-<pid>: the code a process runs (removed by Store.activate when it is gone)
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
_MARKER_RE = re.compile(r"^SLIPSTREAM_RELOAD\s*=\s*['\"]restart['\"]", re.M)


def module_name(relpath: str) -> str | None:
    """The dotted name of a path taken relative to a folder on sys.path (None: not a module)."""
    if not relpath.endswith(".py"):
        return None
    parts = relpath[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def clean_paths(paths: Sequence[str] | None) -> list[str]:
    """Project-relative folders for sys.path, in order ("" is the project root)."""
    out: list[str] = []
    for p in paths or [""]:
        p = str(p).strip("/")
        p = "" if p == "." else p
        if ".." in p.split("/") or "\\" in p or p.startswith("/"):
            continue
        if p not in out:
            out.append(p)
    return out or [""]


def _within(folder: str, base: str) -> str | None:
    """folder relative to base ("" = same), or None when folder is not inside base."""
    if not base:
        return folder
    if folder == base:
        return ""
    return folder[len(base) + 1 :] if folder.startswith(base + "/") else None


def import_root(rel: str, files: Collection[str], paths: Sequence[str]) -> str:
    """The folder (project-relative) that Python imports `rel` from, the way it finds it:

    a file inside a regular package (a folder with __init__.py) is named from the top of its
    package chain; a namespace package or a plain module from the deepest import path above it
    (paths are the sys.path entries of the user's process: the root, src/, ...); failing both,
    from its own folder, as `python file.py` would."""
    parts = rel.split("/")
    k = len(parts) - 1
    while k > 0 and "/".join(parts[:k]) + "/__init__.py" in files:
        k -= 1
    top = "/".join(parts[:k])  # the folder above the topmost package (the file's own if none)
    best: str | None = None
    for p in clean_paths(paths):
        inner = _within(top, p)
        if inner is None or not all(x.isidentifier() for x in inner.split("/") if x):
            continue
        if best is None or len(p) > len(best):
            best = p
    return top if best is None else best


def module_for(rel: str, files: Collection[str], paths: Sequence[str] = ("",)) -> str | None:
    """The module name the project's Python gives `rel` (None: not an importable module)."""
    if not rel.endswith(".py"):
        return None
    root = import_root(rel, files, paths)
    if root not in clean_paths(paths):
        return None  # its folder is not on the path (e.g. "my-scripts/"): not importable by name
    return module_name(rel[len(root) + 1 :] if root else rel)


def shadowed_stdlib(files: Collection[str], paths: Sequence[str]) -> list[tuple[str, str]]:
    """(file, name) for each project module named like a standard-library module.

    Which of the two `import json` gives depends on what was imported first, in the user's
    process and on the runtime alike, so such a project is refused at deploy."""
    found = []
    for rel in sorted(files):
        name = module_for(rel, files, paths)
        if name and "." not in name and name in sys.stdlib_module_names and name != "__main__":
            found.append((rel, name))
    return found


@dataclass
class ReloadReport:
    generation: str
    changed: list[str] = field(default_factory=list)
    reexecuted: list[str] = field(default_factory=list)
    mode: str = "in-place"  # in-place | restart | initial
    reason: str = ""


class CodeLoader:
    """Tracks the generation this process runs and swaps to a newer one."""

    def __init__(self) -> None:
        self.generation: str | None = None
        self.gen_dir: str | None = None  # the generation's real directory
        self.link: str | None = (
            None  # the folder this process imports the project from (.live-<pid>)
        )
        self.paths: list[str] = [""]
        self.manifest: dict[str, str] = {}
        self._sys_paths: list[str] = []
        self._imports: dict[tuple[str, str], set[str]] = {}
        self._before: set[str] = set()
        self.readers: dict[str, set[str]] = {}  # data file -> project modules seen opening it
        self.unattributed: set[str] = set()  # data files opened by code of no project module
        self._hooked = False
        self._prefix_cache: tuple[tuple[str | None, str | None], tuple[str, ...]] = (
            (None, None),
            (),
        )

    # --- where files are -------------------------------------------------------------------
    def _prefixes(self) -> tuple[str, ...]:
        """Where this process's project files live: its own folder, and the generations'."""
        key = (self.link, self.gen_dir)
        if self._prefix_cache[0] != key:  # asked on every open() (the audit hook): cached
            out = []
            if self.link:
                out.append(self.link + "/")
            if self.gen_dir:
                out.append(str(Path(self.gen_dir).parent) + "/")
            self._prefix_cache = (key, tuple(out))
        return self._prefix_cache[1]

    def relative(self, filename: str) -> str | None:
        """Project-relative path of a file of this process's code (through its link or in any
        generation directory), else None."""
        if self.link and filename.startswith(self.link + "/"):
            return filename[len(self.link) + 1 :] or None
        if not self.gen_dir:
            return None
        root = str(Path(self.gen_dir).parent) + "/"
        if not filename.startswith(root):
            return None
        return filename[len(root) :].partition("/")[2] or None  # <gens>/<gen or .live-pid>/<rel>

    def user_modules(self) -> dict[str, ModuleType]:
        prefixes = self._prefixes()
        if not prefixes:
            return {}
        out = {}
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None)
            if isinstance(f, str) and f.startswith(prefixes):
                out[name] = mod
        return out

    # --- what a switch must re-run ----------------------------------------------------------
    def plan(
        self,
        manifest: dict[str, str],
        gen_dir: str | None = None,
        paths: Sequence[str] | None = None,
    ) -> tuple[list[str], set[str], str]:
        """(changed paths, modules to re-execute, "" or why a restart is needed)."""
        old = self.manifest
        changed = sorted(p for p in set(old) | set(manifest) if old.get(p) != manifest.get(p))
        loaded = self.user_modules()
        if any(p.endswith(_NATIVE_SUFFIXES) for p in changed):
            return changed, set(), "a native extension changed"
        if paths is not None and clean_paths(paths) != self.paths:
            return (
                changed,
                set(),
                f"the project's import paths changed ({self.paths} -> {clean_paths(paths)})",
            )
        by_name = {}
        for p in changed:
            m = module_for(p, manifest if p in manifest else old, self.paths)
            if m:
                by_name[m] = p
        changed_mods = set(by_name) & set(loaded)
        for m in changed_mods:
            new_text = ""
            if gen_dir and by_name[m] in manifest:
                try:
                    new_text = (Path(gen_dir) / by_name[m]).read_text(errors="replace")
                except OSError:
                    pass
            if getattr(loaded[m], RESTART_MARKER, None) == "restart" or _MARKER_RE.search(new_text):
                return changed, set(), f"{m} sets {RESTART_MARKER} = 'restart'"
        for p in changed:
            if p.endswith(".py"):  # a module (the import graph), maybe also read as text
                changed_mods |= self.readers.get(p, set()) & set(loaded)
                continue
            if p in self.unattributed:
                return (
                    changed,
                    set(),
                    (
                        f"{p} changed and was read by code that is not a project module, "
                        "so what to re-run cannot be known"
                    ),
                )
            changed_mods |= self.readers.get(p, set()) & set(loaded)
        importers: dict[str, set[str]] = {}
        for name, mod in loaded.items():
            for dep in self._imports_of(name, mod):
                importers.setdefault(dep, set()).add(name)
        todo, affected = list(changed_mods), set(changed_mods)
        while todo:
            for imp in importers.get(todo.pop(), ()):
                if imp not in affected:
                    affected.add(imp)
                    todo.append(imp)
        return changed, affected, ""

    def _imports_of(self, name: str, mod: ModuleType) -> set[str]:
        f = getattr(mod, "__file__", "") or ""
        rel = self.relative(f) or f
        key = (name, self.manifest.get(rel, f))
        if key not in self._imports:
            self._imports[key] = _imports_in(f, name, getattr(mod, "__path__", None) is not None)
        return self._imports[key]

    # --- switching ---------------------------------------------------------------------------
    def switch(
        self,
        generation: str,
        gen_dir: str,
        manifest: dict[str, str],
        paths: Sequence[str] | None = None,
    ) -> tuple[ReloadReport, dict[str, ModuleType]]:
        """Point the process at a new generation; returns the report and the purged modules
        (pass them to rollback() if importing the new code fails)."""
        if self.gen_dir is None:
            self._before = set()
            self._set(generation, gen_dir, manifest, clean_paths(paths))
            self._hook()
            return ReloadReport(generation, sorted(manifest), [], "initial"), {}
        changed, affected, restart = self.plan(manifest, gen_dir, paths)
        if restart:
            return ReloadReport(generation, changed, [], "restart", restart), {}
        self._before = set(self.user_modules())
        purged = {n: sys.modules.pop(n) for n in sorted(affected) if n in sys.modules}
        for n, mod in purged.items():
            # `from pkg import sub` takes the attribute when the package has one: drop it, so
            # the re-executed importer gets the new submodule
            parent, _, child = n.rpartition(".")
            pkg = sys.modules.get(parent) if parent else None
            if pkg is not None and getattr(pkg, child, None) is mod:
                delattr(pkg, child)
        self._set(generation, gen_dir, manifest, self.paths)
        return ReloadReport(generation, changed, sorted(purged), "in-place"), purged

    def rollback(
        self, generation: str, gen_dir: str, manifest: dict[str, str], purged: dict[str, ModuleType]
    ) -> None:
        for name in list(self.user_modules()):
            if name in purged or name not in self._before:
                mod = sys.modules.pop(name, None)
                parent, _, child = name.rpartition(".")
                pkg = sys.modules.get(parent) if parent else None
                if pkg is not None and mod is not None and getattr(pkg, child, None) is mod:
                    delattr(pkg, child)
        sys.modules.update(purged)
        for n, mod in purged.items():
            parent, _, child = n.rpartition(".")
            pkg = sys.modules.get(parent) if parent else None
            if pkg is not None:
                setattr(pkg, child, mod)
        self._set(generation, gen_dir, manifest, self.paths)

    def _set(
        self, generation: str, gen_dir: str, manifest: dict[str, str], paths: list[str]
    ) -> None:
        fresh = self.link is None
        if fresh:
            self.link = os.path.join(
                os.path.dirname(gen_dir.rstrip("/")), f"{LIVE_PREFIX}{os.getpid()}"
            )
            shutil.rmtree(self.link, ignore_errors=True)  # a previous process with this pid
            os.makedirs(self.link)
        self._materialise(gen_dir, {} if fresh else self.manifest, manifest)
        link = self.link
        assert link is not None  # set above
        if fresh:  # relative paths (open("config/x.py")) mean the project's, on every runtime
            os.chdir(link)
        for p in self._sys_paths:
            while p in sys.path:
                sys.path.remove(p)
        self._sys_paths = [os.path.join(link, p) if p else link for p in paths]
        sys.path[0:0] = self._sys_paths
        self.generation, self.gen_dir, self.manifest, self.paths = (
            generation,
            gen_dir,
            dict(manifest),
            list(paths),
        )
        importlib.invalidate_caches()

    def _materialise(self, gen_dir: str, old: dict[str, str], new: dict[str, str]) -> None:
        """Make the live folder hold `new`: replace the files whose hash changed (each at once,
        with os.replace), remove the deleted ones, and drop their compiled .pyc (a same-size
        edit within the same second would otherwise pass Python's mtime check)."""
        assert self.link is not None
        for rel, sha in new.items():
            if old.get(rel) == sha:
                continue
            dst = os.path.join(self.link, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = f"{dst}.{os.getpid()}.tmp"
            try:
                os.link(os.path.join(gen_dir, rel), tmp)
            except OSError:
                shutil.copyfile(os.path.join(gen_dir, rel), tmp)
            os.replace(tmp, dst)
            self._drop_pyc(dst)
        for rel in old.keys() - new.keys():
            dst = os.path.join(self.link, rel)
            try:
                os.unlink(dst)
            except FileNotFoundError:
                pass
            self._drop_pyc(dst)
            d = os.path.dirname(dst)
            while d != self.link and d.startswith(self.link):
                if os.path.isdir(os.path.join(d, "__pycache__")) and not os.listdir(
                    os.path.join(d, "__pycache__")
                ):
                    os.rmdir(os.path.join(d, "__pycache__"))
                try:
                    os.rmdir(d)  # an emptied folder must not linger as a namespace package
                except OSError:
                    break
                d = os.path.dirname(d)

    @staticmethod
    def _drop_pyc(path: str) -> None:
        if not path.endswith(".py"):
            return
        cache = os.path.join(os.path.dirname(path), "__pycache__")
        stem = os.path.basename(path)[:-3] + "."
        try:
            names = os.listdir(cache)
        except OSError:
            return
        for n in names:
            if n.startswith(stem) and n.endswith(".pyc"):
                try:
                    os.unlink(os.path.join(cache, n))
                except OSError:
                    pass

    def close(self) -> None:
        """Remove this process's live folder."""
        if self.link:
            shutil.rmtree(self.link, ignore_errors=True)

    # --- who reads which data file ------------------------------------------------------------
    def _hook(self) -> None:
        if self._hooked:
            return
        self._hooked = True
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        if event != "open":
            return
        path = args[0] if args else None
        if not isinstance(path, str):
            try:
                path = os.fspath(path) if path is not None and not isinstance(path, int) else None
            except TypeError:
                return
            if not isinstance(path, str):
                return
        prefixes = self._prefixes()
        if prefixes and not os.path.isabs(path):  # open("config/x.py"): the project's (cwd)
            try:
                path = os.path.normpath(os.path.join(os.getcwd(), path))
            except OSError:
                return
        if not prefixes or not path.startswith(prefixes) or path.endswith(".pyc"):
            return
        rel = self.relative(path)
        if rel is None or rel not in self.manifest:
            return
        source = path.endswith(".py")  # imported (not a read), or read as text (configurator.py)
        f: FrameType | None = sys._getframe(1)
        while f is not None:
            filename = f.f_code.co_filename
            if source and filename.startswith("<frozen importlib"):
                return  # the import system loading the module
            if filename.startswith(prefixes):
                name = f.f_globals.get("__name__")
                if isinstance(name, str) and name != "__main__":
                    self.readers.setdefault(rel, set()).add(name)
                    return
            f = f.f_back
        if not source:  # a module's source read by no project code (a traceback's lines): no data
            self.unattributed.add(rel)


def _imports_in(path: str, name: str, is_package: bool) -> set[str]:
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return set()
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                found.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - node.level + 1] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod:
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
    return found
