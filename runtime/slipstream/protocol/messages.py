"""The protocol's messages as types: each is built in one place and read with its type.

- CallHeader / ReplyHeader: the JSON header of a data-channel request and of its reply
  (built by call_header(), read by the server's data channel; sdk/datachannel.py both sides);
  call_params(): the same call's query over HTTP (method, tag, stream).
- EndpointInfo: an endpoint as the worker describes it after importing the code (worker/main.py
  describe_endpoint), plus what the runtime adds (its GPU, a fallback note, why it cannot run).
- EndpointStatus: an endpoint with its pool and stats (GET /v1/endpoints, /v1/status;
  server/pools.py Pool.describe).
- CommitReply: the runtime's answer to a deploy (POST /v1/generations; server/service.py
  builds it, sdk/sync.py reads it into a SyncResult), its endpoints as commit_endpoint() shows them.

They are TypedDicts: on the wire they stay plain JSON objects, so nothing about the format
changes; a field a newer peer adds is ignored, one an older peer lacks is read with .get().
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

__all__ = [
    "CallHeader",
    "ReplyHeader",
    "call_header",
    "call_params",
    "ParamInfo",
    "EndpointInfo",
    "EndpointStatus",
    "COMMIT_ENDPOINT_FIELDS",
    "commit_endpoint",
    "CommitReply",
]


# --- the data channel ---------------------------------------------------------------------------


class CallHeader(TypedDict, total=False):
    """What a data-channel request says before its body (a wire frame of args and kwargs)."""

    token: str  # the runtime's token (checked before the body is read)
    endpoint: str
    method: str | None  # a class endpoint's method; None for a function
    project: str | None  # the project key (config.project_key); None: the only one defining it


def call_header(token: str, endpoint: str, method: str | None, project: str | None) -> CallHeader:
    return {"token": token, "endpoint": endpoint, "method": method, "project": project}


def call_params(
    method: str | None, *, tag: str | None = None, stream: bool = False
) -> dict[str, str] | None:
    """The query of an HTTP call (POST .../call or .../spawn) as the runtime's routes read it:
    stream (generator items as they come, SDK format), method (a class endpoint's), tag (its log
    lines carry it: GET /v1/logs?tag=); None when there is nothing to say."""
    params: dict[str, str] = {}
    if stream:
        params["stream"] = "true"
    if method:
        params["method"] = method
    if tag:
        params["tag"] = tag
    return params or None


class ReplyHeader(TypedDict):
    """What the runtime says before a data-channel reply's records: the call's HTTP status."""

    status: int


# --- endpoints ----------------------------------------------------------------------------------


class ParamInfo(TypedDict, total=False):
    """One parameter of an endpoint's signature (a method's for a class)."""

    name: str
    required: bool
    default: Any  # JSON, or the repr of a default that is not
    annotation: str
    schema: dict[str, Any]  # its JSON schema, when the annotation has one


class EndpointInfo(TypedDict, total=False):
    """An endpoint as the worker that imported its code describes it ("scanned"), plus what the
    runtime adds once it has a pool for it (gpu, note, unavailable, variant_of, gpu_fallback_of)."""

    name: str
    module: str
    qualname: str
    file: str  # project-relative
    line: int
    kind: Literal["function", "class"]
    methods: list[str]  # a class's endpoint methods
    generator: bool
    streams: list[str]  # what streams its results: [""] for a generator function, else methods
    signature: dict[str, list[ParamInfo]]  # by method ("" for a function)
    schemas: dict[str, Any]  # shared type definitions the signature's schemas refer to
    doc: str
    spec: dict[str, Any]  # EndpointSpec.to_dict()
    warnings: list[str]
    models: list[str]  # model ids its code names (GPU memory estimate, server/allocator.py)
    # added by the runtime
    gpu: str  # the GPU it runs on (a label: "H100", "2xA100-80GB")
    note: str  # why it runs elsewhere than asked (a fallback GPU), shown with costs
    unavailable: str  # why it cannot run at all ("" when it can)
    variant_of: str
    gpu_fallback_of: str


class EndpointStatus(TypedDict, total=False):
    """An endpoint with its pool: GET /v1/endpoints/{name}, each of /v1/status's endpoints."""

    name: str
    module: str | None
    file: str | None
    line: int | None
    kind: Literal["function", "class"] | None
    methods: list[str]
    generator: bool
    streams: list[str]
    gpu: str
    spec: dict[str, Any]
    generation: str
    note: str
    unavailable: str
    last_error: Any
    stale: list[
        dict[str, str]
    ]  # kept objects that run old code: key, path, cls, why (worker/follow.py)
    pool: dict[
        str, Any
    ]  # workers (each with its WorkerState), min, max, concurrency, queued, max_queue
    stats: dict[str, Any]
    project: str | None


# The fields of an endpoint a deploy's reply shows (each present, None when unknown).
COMMIT_ENDPOINT_FIELDS = (
    "name",
    "module",
    "file",
    "line",
    "kind",
    "methods",
    "generator",
    "streams",
    "signature",
    "schemas",
    "doc",
    "spec",
    "warnings",
    "gpu",
    "note",
    "unavailable",
)


def commit_endpoint(info: Mapping[str, Any]) -> EndpointInfo:
    """An endpoint as a deploy's reply shows it: COMMIT_ENDPOINT_FIELDS of its description."""
    return {k: info.get(k) for k in COMMIT_ENDPOINT_FIELDS}  # type: ignore[return-value]


# --- deploys ------------------------------------------------------------------------------------


class CommitReply(TypedDict):
    """The runtime's answer to POST /v1/generations: the project's new (or unchanged) generation."""

    project: str  # the key the runtime keeps the project under
    generation: str
    unchanged: bool  # the same files as the current generation: nothing was redeployed
    changed: list[str]  # project-relative paths that differ from the previous generation
    reexecuted: list[str]  # modules the workers imported again
    restart: str  # why workers were replaced instead of reloaded in place ("" = in place)
    installs: list[
        dict[str, Any]
    ]  # dependency environments: requirements, environment, python, cached, reused (found installed by an earlier runtime: the embedded one's cache), install_s
    # the calls running when it went live, which finish on the code they started with:
    # [{"endpoint": "hello", "calls": 3, "generation": "g6"}]
    in_flight: list[dict[str, Any]]
    endpoints: list[EndpointInfo]  # commit_endpoint() of each
    duration_ms: float
    # per endpoint, from its workers that reloaded before the reply: {"updated": objects that
    # now run the saved code, "classes": theirs, "stale": [{key, path, cls, why}], "loading": n}
    kept: dict[str, dict[str, Any]]


def stale_text(stale: dict[str, str]) -> str:
    """One kept object that runs old code (worker/follow.py's Stale), as users read it:
    "kept 'gpt' (at h.0.mlp) still runs the old MLP: MLP.__init__ changed: ..."."""
    where = stale.get("path", "")
    at = f" (at {where})" if where and not where.startswith("(") else ""
    cls = stale.get("cls", "").rsplit(".", 1)[-1]
    return f"kept {stale.get('key')}{at} still runs the old {cls}: {stale.get('why')}"
