"""Files, URIs and project roots; mapping paths reported by a runtime back to local files."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from pygls.uris import from_fs_path, to_fs_path

from slipstream.sdk import envvars

__all__ = [
    "cache_dir",
    "local_file",
    "path_to_uri",
    "project_root",
    "uri_to_path",
]


def uri_to_path(uri: str) -> Path | None:
    path = to_fs_path(uri)
    return Path(path) if path else None


def path_to_uri(path: str | Path) -> str:
    return from_fs_path(str(path)) or Path(path).as_uri()


def project_root(path: Path) -> Path:
    """The project root as Python sees it (slipstream.sdk.config.find_project_root): the nearest
    folder upward holding `slipstream.toml`, else the top of the file's package, src/ layout or
    namespace package (pyproject.toml), else the file's folder."""
    from slipstream.sdk.sync import find_project_root

    return Path(find_project_root(path)).resolve()


def cache_dir() -> Path:
    """$SLIPSTREAM_CACHE, else ~/.cache/slipstream (outputs go in its `outputs` folder)."""
    configured = os.environ.get(envvars.CACHE)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slipstream"


def local_file(remote: str, roots: list[Path]) -> Path | None:
    """The local file a runtime's path refers to, if it maps into one of `roots`.

    Runtimes report files relative to the project root ("pipeline.py"), as absolute local
    paths (the embedded runtime), or as absolute paths in their own code folder
    ("/srv/slipstream/gen-7/pipeline.py"); the last are matched on their longest tail that
    exists under a root.
    """
    if not remote or remote.startswith("<"):
        return None
    if any(part in remote for part in ("site-packages", "dist-packages", "/lib/python")):
        return None  # a library frame, not the user's code
    pure = (
        PureWindowsPath(remote) if "\\" in remote and "/" not in remote else PurePosixPath(remote)
    )
    candidate = Path(remote)
    if candidate.is_absolute():
        resolved = candidate.resolve() if candidate.exists() else None
        if resolved is not None and any(_inside(resolved, r) for r in roots):
            return resolved
    else:
        for root in roots:
            local = (root / remote).resolve()
            if local.is_file() and _inside(local, root):
                return local
    parts = [p for p in pure.parts if p not in ("/", "\\") and not p.endswith(":\\")]
    for size in range(len(parts), 0, -1):
        tail = parts[-size:]
        if ".." in tail:
            continue
        for root in roots:
            local = root.joinpath(*tail)
            if local.is_file():
                return local.resolve()
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
