"""Which runtime a project with one runtime talks to: the configured one, else the embedded one.
Decided here once, for the SDK session (session.py), the CLI (`slipstream run`, `slipstream dev`)
and the editor's daemon (daemon/slipstream_daemon/runtime.py).

The configured runtime is SLIPSTREAM_RUNTIME_URL (with SLIPSTREAM_TOKEN), else [runtime] url in
slipstream.toml (config.runtime_from_env); with neither, the embedded runtime, a `slipstream
serve` child on loopback that this process starts and stops (embedded.py). A project with a
[runtimes] table routes each endpoint over several (routing.py); this applies when it has none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol.envvars import RUNTIME_URL, TOKEN
from .config import ProjectConfig, runtime_from_env

if TYPE_CHECKING:
    from .embedded import EmbeddedRuntime

__all__ = [
    "ChosenRuntime",
    "configured_or_embedded",
    "routes_over_several",
    "start_embedded",
    "running_embedded",
]


@dataclass
class ChosenRuntime:
    url: str
    token: str
    embedded: EmbeddedRuntime | None = None  # started by this process for it: stop() it when done

    @property
    def is_embedded(self) -> bool:
        return self.embedded is not None

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def routes_over_several(project: ProjectConfig | None) -> bool:
    """slipstream.toml has [runtimes] and SLIPSTREAM_RUNTIME_URL is not set: the session routes
    each endpoint to its runtime (routing.RoutedClients, which starts the embedded one when an
    endpoint goes there), so nothing here is chosen or started for it."""
    return (
        project is not None
        and project.raw.get("runtimes") is not None
        and not os.environ.get(RUNTIME_URL)
    )


def configured_or_embedded(
    root: str | os.PathLike[str] | None, project: ProjectConfig | None, *, export: bool = False
) -> ChosenRuntime:
    """The configured runtime (url, token), else the embedded one, started now for `root`.
    ValueError: a configured URL that cannot be used (the message says which setting and what to
    write). export: an embedded runtime is also put in this process's environment
    (SLIPSTREAM_RUNTIME_URL, SLIPSTREAM_TOKEN), so what it starts and every later client use it."""
    configured = runtime_from_env(project)
    if configured is not None:
        return ChosenRuntime(*configured)
    return start_embedded(root, export=export)


def start_embedded(root: str | os.PathLike[str] | None, *, export: bool = False) -> ChosenRuntime:
    from .embedded import EmbeddedRuntime

    embedded = EmbeddedRuntime.start(Path(root) if root is not None else None)
    if root is not None:
        _record(Path(root), embedded.url, embedded.token, embedded.proc.pid)
    if export:
        os.environ[RUNTIME_URL] = embedded.url
        os.environ[TOKEN] = embedded.token
    return ChosenRuntime(embedded.url, embedded.token, embedded)


# An embedded runtime is recorded for its project while it runs, so that `slipstream status`,
# `logs` and `rebuild` in that folder reach the runtime `slipstream dev` (or a script) started:
# its token exists nowhere else. Private to the user (0600), ignored once its process is gone.
def _running_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "slipstream" / "running"


def _record(root: Path, url: str, token: str, pid: int) -> None:
    from .config import project_key

    try:
        folder = _running_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{project_key(root)}-{pid}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url, "token": token, "pid": pid, "root": str(root)}, f)
    except (OSError, ValueError):
        pass  # a read-only home: the CLI then needs SLIPSTREAM_RUNTIME_URL, as before


def running_embedded(root: Path) -> tuple[str, str] | None:
    """(url, token) of the newest embedded runtime still running for this project, if any."""
    from .config import project_key

    try:
        key = project_key(root)
        found = sorted(_running_dir().glob(f"{key}-*.json"), key=lambda p: p.stat().st_mtime)
    except (OSError, ValueError):
        return None
    for path in reversed(found):
        try:
            rec = json.loads(path.read_text())
            os.kill(int(rec["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # its runtime is gone
            continue
        return rec["url"], rec["token"]
    return None
