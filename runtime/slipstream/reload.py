"""Swapping code generations inside a live process.

A generation is a directory of the project's files. Switching re-executes only the changed
modules and the modules that import them (found from their import statements); everything
else, and every object held by keep(), stays as it is.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

__all__ = ["CodeLoader", "ReloadReport", "module_name", "RESTART_MARKER"]

# A module that sets this at top level asks to be reloaded by replacing the worker
# (for modules holding C-extension or process-wide state that re-execution would corrupt).
RESTART_MARKER = "SLIPSTREAM_RELOAD"
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
_MARKER_RE = re.compile(r"^SLIPSTREAM_RELOAD\s*=\s*['\"]restart['\"]", re.M)


def module_name(relpath: str) -> str | None:
    if not relpath.endswith(".py"):
        return None
    parts = relpath[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


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
        self.gen_dir: str | None = None
        self.manifest: dict[str, str] = {}
        self._imports: dict[tuple[str, str], set[str]] = {}

    def relative(self, filename: str) -> str | None:
        """Project-relative path of a file from any generation directory, else None."""
        if not self.gen_dir:
            return None
        root = str(Path(self.gen_dir).parent) + "/"
        if not filename.startswith(root):
            return None
        return filename[len(root) :].partition("/")[2] or None

    def user_modules(self) -> dict[str, ModuleType]:
        if not self.gen_dir:
            return {}
        root = str(Path(self.gen_dir).parent) + "/"
        out = {}
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None)
            if f and f.startswith(root):
                out[name] = mod
        return out

    def plan(self, manifest: dict[str, str], gen_dir: str | None = None) -> tuple[list[str], set[str], str]:
        """(changed paths, modules to re-execute, "" or why a restart is needed)."""
        old = self.manifest
        changed = sorted(p for p in set(old) | set(manifest) if old.get(p) != manifest.get(p))
        loaded = self.user_modules()
        if any(p.endswith(_NATIVE_SUFFIXES) for p in changed):
            return changed, set(), "a native extension changed"
        changed_mods = {m for p in changed if (m := module_name(p))} & set(loaded)
        for m in changed_mods:
            new_text = ""
            if gen_dir:
                rel = next((p for p in changed if module_name(p) == m), "")
                try:
                    new_text = (Path(gen_dir) / rel).read_text(errors="replace")
                except OSError:
                    pass
            if getattr(loaded[m], RESTART_MARKER, None) == "restart" or _MARKER_RE.search(new_text):
                return changed, set(), f"{m} sets {RESTART_MARKER} = 'restart'"
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
        rel = f.removeprefix(self.gen_dir + "/") if self.gen_dir else f
        key = (name, self.manifest.get(rel, f))
        if key not in self._imports:
            self._imports[key] = _imports_in(f, name, getattr(mod, "__path__", None) is not None)
        return self._imports[key]

    def switch(self, generation: str, gen_dir: str, manifest: dict[str, str]) -> tuple[ReloadReport, dict[str, ModuleType]]:
        """Point the process at a new generation; returns the report and the purged modules
        (pass them to rollback() if importing the new code fails)."""
        if self.gen_dir is None:
            self._set(generation, gen_dir, manifest)
            return ReloadReport(generation, sorted(manifest), [], "initial"), {}
        changed, affected, restart = self.plan(manifest, gen_dir)
        if restart:
            return ReloadReport(generation, changed, [], "restart", restart), {}
        purged = {n: sys.modules.pop(n) for n in sorted(affected) if n in sys.modules}
        self._set(generation, gen_dir, manifest)
        return ReloadReport(generation, changed, sorted(purged), "in-place"), purged

    def rollback(self, generation: str, gen_dir: str, manifest: dict[str, str], purged: dict[str, ModuleType]) -> None:
        for name in list(self.user_modules()):
            if name in purged or self._from_dir(sys.modules[name], self.gen_dir):
                sys.modules.pop(name, None)
        sys.modules.update(purged)
        self._set(generation, gen_dir, manifest)

    @staticmethod
    def _from_dir(mod: ModuleType, d: str | None) -> bool:
        f = getattr(mod, "__file__", None)
        return bool(d and f and f.startswith(d + "/"))

    def _set(self, generation: str, gen_dir: str, manifest: dict[str, str]) -> None:
        if self.gen_dir and self.gen_dir in sys.path:
            sys.path.remove(self.gen_dir)
        sys.path.insert(0, gen_dir)
        self.generation, self.gen_dir, self.manifest = generation, gen_dir, dict(manifest)
        importlib.invalidate_caches()


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
