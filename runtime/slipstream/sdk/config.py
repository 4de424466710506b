"""Where the project is and which runtime it talks to.

Runtime: SLIPSTREAM_RUNTIME_URL / SLIPSTREAM_TOKEN, else the project's slipstream.toml
([runtime] url, token_env), else none (the caller starts the embedded local runtime).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..protocol import envvars

__all__ = [
    "ProjectConfig",
    "find_project_root",
    "import_paths",
    "module_import_root",
    "package_top",
    "source_dirs",
    "shadowing_modules",
    "load_project",
    "runtime_from_env",
    "project_key",
    "CONFIG_NAME",
    "PROJECT_ENV",
]

CONFIG_NAME = "slipstream.toml"
PYPROJECT = "pyproject.toml"
from ..protocol.envvars import PROJECT as PROJECT_ENV  # noqa: E402


@dataclass
class ProjectConfig:
    root: Path
    name: str
    runtime_url: str | None = None
    token_env: str = envvars.TOKEN
    exclude: list[str] = field(default_factory=list)
    include: list[str] = field(
        default_factory=list
    )  # [sync] include: files synced whatever their suffix
    include_data: bool = True
    raw: dict[str, Any] = field(default_factory=dict)


def package_top(path: str | os.PathLike[str]) -> Path:
    """The folder Python imports a file from when nothing else is known: for a file in a regular
    package (folders with __init__.py), the folder above the package's top; else its own folder
    (a folder given stands for itself)."""
    p = Path(path).resolve()
    d = p if p.is_dir() else p.parent
    while (d / "__init__.py").is_file() and d.parent != d:
        d = d.parent
    return d


def module_import_root(name: str, file: str | os.PathLike[str]) -> Path | None:
    """The sys.path folder a module was imported from, from its __name__ and __file__
    (``app.a`` in /p/app/a.py -> /p; a namespace package's module alike), or None."""
    p = Path(file).resolve()
    parts = name.split(".")
    if not name or not all(x.isidentifier() for x in parts):
        return None
    depth = len(parts) if p.name == "__init__.py" else len(parts) - 1
    d = p.parent
    for x in reversed(parts[:depth]):
        if d.name != x:
            return None  # imported under a name its path does not spell (importlib tricks)
        d = d.parent
    return d


def find_project_root(
    path: str | os.PathLike[str], import_root: str | os.PathLike[str] | None = None
) -> Path:
    """The project's root folder, found the way Python finds the top of the package:

    1. the nearest folder upward holding slipstream.toml;
    2. else the folder the file is imported from (``import_root`` when the caller knows it from
       the module's __name__, else the top of its package chain, else the file's folder), or the
       nearest folder above it holding pyproject.toml when it is that folder's src/ (or another
       source folder pyproject.toml declares), or when the file is written as a module of a
       namespace package rooted there (it imports relatively, or through that package's name)."""
    p = Path(path).resolve()
    start = p if p.is_dir() else p.parent
    for d in (start, *start.parents):
        if (d / CONFIG_NAME).is_file():
            return d
    top = Path(import_root).resolve() if import_root else package_top(p)
    for cand in (top, *top.parents):
        if (cand / PYPROJECT).is_file():
            if (
                cand == top
                or top in source_dirs(cand)
                or (not import_root and _namespace_member(p, cand, top))
            ):
                return cand
            break
    return top


def _namespace_member(file: Path, root: Path, folder: Path) -> bool:
    """Whether `file` (in `folder`, no __init__.py above it) is written as a module of a
    namespace package imported from `root`: it imports relatively, or absolutely through the
    first folder between root and it (``from ns.tools import x`` in root/ns/tools/work.py)."""
    import ast

    parts = folder.relative_to(root).parts
    if not parts or not all(x.isidentifier() for x in parts):
        return False
    # a folder (the editor asks per folder) stands for the modules in it
    files = [file] if file.suffix == ".py" and file.is_file() else sorted(folder.glob("*.py"))[:50]
    for f in files:
        try:
            tree = ast.parse(f.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").split(".")[0] == parts[0]
            ):
                return True
            if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == parts[0] for a in node.names
            ):
                return True
    return False


def source_dirs(root: Path) -> list[Path]:
    """Folders under root that hold top-level modules besides root itself: slipstream.toml
    [project] paths, pyproject.toml's setuptools/poetry/hatch source folders, and src/ when it
    is a source folder (no __init__.py of its own)."""
    out: list[Path] = []
    declared: list[str] = []
    try:
        declared += [str(x) for x in load_project(root).raw.get("project", {}).get("paths", [])]
    except ValueError:
        pass
    py = root / PYPROJECT
    if py.is_file():
        try:
            data = tomllib.loads(py.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            data = {}
        tool = data.get("tool", {}) if isinstance(data.get("tool"), dict) else {}
        st = tool.get("setuptools", {}) if isinstance(tool.get("setuptools"), dict) else {}
        pkg_dir = st.get("package-dir", {})
        if isinstance(pkg_dir, dict) and isinstance(pkg_dir.get(""), str):
            declared.append(pkg_dir[""])
        find = st.get("packages", {})
        if isinstance(find, dict) and isinstance(find.get("find"), dict):
            declared += [str(w) for w in find["find"].get("where", []) if isinstance(w, str)]
        poetry = tool.get("poetry", {}) if isinstance(tool.get("poetry"), dict) else {}
        for pk in poetry.get("packages", []) if isinstance(poetry.get("packages"), list) else []:
            if isinstance(pk, dict) and isinstance(pk.get("from"), str):
                declared.append(pk["from"])
        hatch = tool.get("hatch", {}) if isinstance(tool.get("hatch"), dict) else {}
        wheel = (
            hatch.get("build", {}).get("targets", {}).get("wheel", {})
            if isinstance(hatch.get("build"), dict)
            else {}
        )
        for pk in wheel.get("packages", []) if isinstance(wheel, dict) else []:
            if isinstance(pk, str) and "/" in pk.strip("/"):
                declared.append(pk.strip("/").rsplit("/", 1)[0])
    if (root / "src").is_dir() and not (root / "src" / "__init__.py").is_file():
        declared.append("src")
    for rel in declared:
        d = (root / rel).resolve()
        if d != root.resolve() and d.is_dir() and d.is_relative_to(root.resolve()) and d not in out:
            out.append(d)
    return out


def import_paths(
    root: str | os.PathLike[str], extra: list[str | os.PathLike[str]] | None = None
) -> list[str]:
    """The folders (relative to root, "" = root) the runtime puts on sys.path for this project:
    the root, then `extra` (folders the user's process imports from, inside root), then the
    source folders. Folders outside root are left out, and so are sys.path entries that are no
    folder (an editable install's `__editable__...__path_hook__`, a missing folder)."""
    r = Path(root).resolve()
    out = [""]
    for d in [*(extra or []), *source_dirs(r)]:
        if not Path(d).is_dir():
            continue
        try:
            rel = Path(d).resolve().relative_to(r).as_posix()
        except ValueError:
            continue
        rel = "" if rel == "." else rel
        if rel not in out and not any(
            part in ("__pycache__",) or part.startswith(".") for part in rel.split("/") if part
        ):
            out.append(rel)
    return out


_parsed: dict[tuple[str, Any], ProjectConfig] = {}  # (root, the file's stat) -> its config


def load_project(root: Path) -> ProjectConfig:
    """The project's slipstream.toml (defaults without one); ValueError for one that does not
    parse. Parsed once while the file is unchanged: a session's start, its sync and the CLI ask
    for it many times (an edit is seen at once: its size or mtime changes)."""
    cfg = root / CONFIG_NAME
    try:
        st = cfg.stat()
        stamp: Any = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        stamp = None
    key = (str(root), stamp)
    hit = _parsed.get(key)
    if hit is None:
        hit = _parse_project(root, cfg if stamp is not None else None)
        if len(_parsed) > 64:
            _parsed.clear()
        _parsed[key] = hit
    return replace(
        hit, exclude=list(hit.exclude), include=list(hit.include)
    )  # callers may not change ours


def _parse_project(root: Path, cfg: Path | None) -> ProjectConfig:
    data: dict[str, Any] = {}
    if cfg is not None and cfg.is_file():
        try:
            data = tomllib.loads(cfg.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{cfg}: {exc}; fix the file or delete it") from None
    project = data.get("project", {})
    runtime = data.get("runtime", {})
    sync = data.get("sync", {})
    return ProjectConfig(
        root=root,
        name=project.get("name", root.name),
        runtime_url=runtime.get("url"),
        token_env=runtime.get("token_env", envvars.TOKEN),
        exclude=list(sync.get("exclude", [])),
        include=[str(x) for x in sync.get("include", [])],
        raw=data,
    )


def shadowing_modules() -> list[tuple[str, str]]:
    """(name, file) for standard-library names this process resolves to a file outside the
    standard library: imported already, or found first on sys.path (a project's calendar.py)."""
    import sys

    std = (str(Path(os.__file__).resolve().parent) + os.sep,)  # the standard library's own folder
    found: dict[str, str] = {}
    for name in sorted(sys.stdlib_module_names):
        f = getattr(sys.modules.get(name), "__file__", None)
        if f and not str(Path(f).resolve()).startswith(std):
            found[name] = f
    for entry in sys.path:
        d = Path(entry or os.getcwd())
        if (
            "site-packages" in str(d)
            or not d.is_dir()
            or (str(d.resolve()) + os.sep).startswith(std)
        ):
            continue
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for fn in names:
            stem = (
                fn[:-3] if fn.endswith(".py") else fn if (d / fn / "__init__.py").is_file() else ""
            )
            if stem in sys.stdlib_module_names and stem not in found and stem != "__main__":
                found[stem] = str(d / fn)
    return sorted(found.items())


def runtime_from_env(project: ProjectConfig | None = None) -> tuple[str, str] | None:
    """The configured runtime (url, token), else None (the caller starts the embedded one).
    The URL is http(s)://host:port, or ssh://[user@]host[:port] (an ssh config alias works):
    RuntimeClient tunnels to the runtime on that host over ssh (sshlink.py)."""
    url = os.environ.get(envvars.RUNTIME_URL) or (project.runtime_url if project else None)
    if not url:
        return None
    if url.split("://", 1)[0].lower() not in ("http", "https", "ssh") or "://" not in url:
        where = (
            envvars.RUNTIME_URL
            if os.environ.get(envvars.RUNTIME_URL)
            else f"[runtime] url in {CONFIG_NAME}"
        )
        raise ValueError(
            f"runtime URL {url!r} ({where}): write http://host:port, https://host[:port] or ssh://[user@]host[:port]"
        )
    token_env = project.token_env if project else envvars.TOKEN
    token = os.environ.get(token_env) or os.environ.get(envvars.TOKEN, "")
    return url.rstrip("/"), token


def project_key(root: str | os.PathLike[str]) -> str:
    """The name a runtime keeps this project's code, endpoints and metering under.

    The project's name (slipstream.toml [project] name, else the folder's) plus a short hash of
    this machine and the root's absolute path, so two checkouts called "app" never collide.
    Every client derives it here, from the root that find_project_root() found. Inside the
    runtime (a worker calling another endpoint) it is the project the worker belongs to."""
    if os.environ.get(envvars.IN_RUNTIME) and os.environ.get(PROJECT_ENV):
        return os.environ[PROJECT_ENV]
    path = Path(root).resolve()
    try:
        name = load_project(path).name
    except (
        ValueError
    ):  # a broken slipstream.toml is reported by the sync; the key needs only a name
        name = path.name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-._")[:40] or "project"
    digest = hashlib.sha256(f"{socket.gethostname()}\0{path}".encode()).hexdigest()[:8]
    return f"{name}-{digest}"
