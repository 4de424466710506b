"""Credentials narrowed to one project: what workers hold instead of the runtime's token.

User code runs in workers and may print its environment (`print(dict(os.environ))`), which
lands in the reply's logs, the client's terminal and /v1/logs. So a worker never sees the
runtime's token: its SLIPSTREAM_TOKEN is `project_token(token, key)`, derived with HMAC from
the runtime's token and the project's key (nothing to store; it changes with the token). The
HTTP check (app.TokenAuth) and the data channel accept it for that project's calls and routes
only (`allows`): never another project's, nor a deploy, nor the runtime-wide listings.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["PREFIX", "project_token", "token_project", "allows", "refusal"]

PREFIX = "slp-project:"  # then the project's key, ':' and the MAC (a key never holds ':')

_SPAWNED = re.compile(r"^/v1/calls/[^/]+$")  # a spawned call's id is a random secret (calls.py)
_BLOB = re.compile(r"^/v1/blobs/[0-9a-f]{64}$")  # workers on other machines fetch code (fetch.py)
_ENDPOINT = re.compile(r"^/v1/endpoints(/[^/]+(/(call|spawn|debug|variants))?)?$")


def project_token(token: str, key: str) -> str:
    mac = hmac.new(token.encode(), b"project:" + key.encode(), hashlib.sha256).hexdigest()[:48]
    return f"{PREFIX}{key}:{mac}"


def token_project(token: str, got: str) -> str | None:
    """The project whose narrowed credential `got` is (checked in constant time), else None."""
    if not token or not got.startswith(PREFIX):
        return None
    key, _, _mac = got[len(PREFIX) :].rpartition(":")
    if not key or not hmac.compare_digest(project_token(token, key).encode(), got.encode()):
        return None
    return key


def allows(key: str, method: str, path: str, query: dict[str, str]) -> bool:
    """Whether project `key`'s credential may make this request: its own project's routes
    (/v1/projects/KEY/..., or an /v1/endpoints route with ?project=KEY), its own logs, its
    spawned calls (their ids are secrets) and, read-only, code blobs by hash."""
    if path == f"/v1/projects/{key}" or path.startswith(f"/v1/projects/{key}/"):
        return True
    if _ENDPOINT.match(path) or path == "/v1/logs":
        return query.get("project") == key
    if _SPAWNED.match(path):
        return True
    return method == "GET" and bool(_BLOB.match(path))


def refusal(key: str) -> str:
    return (
        f"this token is narrowed to project {key!r} (the credential workers hold): it reaches only "
        "that project's calls and routes; use the runtime's token (the one `slipstream serve` "
        "printed) for anything else"
    )
