"""Where the project is and which runtime it talks to.

Runtime: SLIPSTREAM_RUNTIME_URL / SLIPSTREAM_TOKEN, else the project's slipstream.toml
([runtime] url, token_env), else none (the caller starts the embedded local runtime).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ProjectConfig", "find_project_root", "load_project", "runtime_from_env", "CONFIG_NAME"]

CONFIG_NAME = "slipstream.toml"


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
