"""Secrets: `@endpoint(secrets=["HF_TOKEN", ...])` names environment variables whose values are
taken from the caller's environment or the project's `.env` file, travel with each call over the
authenticated channel, and are set in the worker's environment before the call runs.

They are never part of the code, the spec (only the names are), the runtime's disk, its logs,
status, metrics or OpenAPI: the runtime passes them through without decoding them, and the worker
masks their values in the output it streams and in the errors it reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..protocol.secrets import SECRETS_KEY

__all__ = ["SECRETS_KEY", "resolve", "read_dotenv", "with_secrets"]

_dotenv_cache: dict[Path, tuple[int, int, dict[str, str]]] = {}


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (export prefix, quotes and comments as shells write them);
    parsed again only when the file changes, since every call of an endpoint with secrets asks."""
    try:
        st = path.stat()
    except OSError:
        return {}
    hit = _dotenv_cache.get(path)
    if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    _dotenv_cache[path] = (st.st_mtime_ns, st.st_size, out)
    return out


def resolve(names: tuple[str, ...], endpoint: str, root: Path | None) -> dict[str, str]:
    """The values of an endpoint's secrets, from this process's environment, else the project's
    .env; a missing one fails before the call, naming it and where it was looked for."""
    if not names:
        return {}
    dotenv_path = (root or Path.cwd()) / ".env"
    dotenv: dict[str, str] | None = None
    values, missing = {}, []
    for name in names:
        if name in os.environ:
            values[name] = os.environ[name]
            continue
        if dotenv is None:
            dotenv = read_dotenv(dotenv_path)
        if name in dotenv:
            values[name] = dotenv[name]
        else:
            missing.append(name)
    if missing:
        from ..protocol.errors import SlipstreamError

        which = ", ".join(repr(m) for m in missing)
        raise SlipstreamError(
            f"endpoint {endpoint!r} needs the secret{'s' if len(missing) > 1 else ''} {which} (secrets=[...]), "
            f"set neither in this process's environment nor in {dotenv_path}. "
            f"Export it (export {missing[0]}=...) or add a line {missing[0]}=... to that .env file."
        )
    return values


def with_secrets(ep: Any, kwargs: dict[str, Any], root: Path | None) -> dict[str, Any]:
    """The call's keyword arguments, plus the endpoint's secrets when it names any."""
    names = getattr(ep.spec, "secrets", ())
    if not names:
        return kwargs
    return {**kwargs, SECRETS_KEY: resolve(names, ep.name, root)}
