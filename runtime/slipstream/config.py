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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ProjectConfig", "find_project_root", "load_project", "runtime_from_env", "project_key", "CONFIG_NAME", "PROJECT_ENV"]

CONFIG_NAME = "slipstream.toml"
PROJECT_ENV = "SLIPSTREAM_PROJECT"  # set by the runtime in its workers: nested calls stay in their project


@dataclass
class ProjectConfig:
    root: Path
    name: str
    runtime_url: str | None = None
    token_env: str = "SLIPSTREAM_TOKEN"
    exclude: list[str] = field(default_factory=list)
    include_data: bool = True
    raw: dict[str, Any] = field(default_factory=dict)


def find_project_root(path: str | os.PathLike[str]) -> Path:
    """The nearest folder upward holding slipstream.toml, else the file's own folder."""
    p = Path(path).resolve()
    start = p if p.is_dir() else p.parent
    for d in (start, *start.parents):
        if (d / CONFIG_NAME).is_file():
            return d
    return start


def load_project(root: Path) -> ProjectConfig:
    data: dict[str, Any] = {}
    cfg = root / CONFIG_NAME
    if cfg.is_file():
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
        token_env=runtime.get("token_env", "SLIPSTREAM_TOKEN"),
        exclude=list(sync.get("exclude", [])),
        raw=data,
    )


def runtime_from_env(project: ProjectConfig | None = None) -> tuple[str, str] | None:
    url = os.environ.get("SLIPSTREAM_RUNTIME_URL") or (project.runtime_url if project else None)
    if not url:
        return None
    token_env = project.token_env if project else "SLIPSTREAM_TOKEN"
    token = os.environ.get(token_env) or os.environ.get("SLIPSTREAM_TOKEN", "")
    return url.rstrip("/"), token


def project_key(root: str | os.PathLike[str]) -> str:
    """The name a runtime keeps this project's code, endpoints and metering under.

    The project's name (slipstream.toml [project] name, else the folder's) plus a short hash of
    this machine and the root's absolute path, so two checkouts called "app" never collide.
    Every client derives it here, from the root that find_project_root() found. Inside the
    runtime (a worker calling another endpoint) it is the project the worker belongs to."""
    if os.environ.get("SLIPSTREAM_IN_RUNTIME") and os.environ.get(PROJECT_ENV):
        return os.environ[PROJECT_ENV]
    path = Path(root).resolve()
    try:
        name = load_project(path).name
    except ValueError:  # a broken slipstream.toml is reported by the sync; the key needs only a name
        name = path.name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-._")[:40] or "project"
    digest = hashlib.sha256(f"{socket.gethostname()}\0{path}".encode()).hexdigest()[:8]
    return f"{name}-{digest}"
