"""The daemon's side of the Slipstream LSP contract (docs/lsp-protocol.md).

Every custom command name, notification name and payload shape lives here once; the
TypeScript mirror is vscode-extension/src/protocol.ts. Payloads are plain JSON dicts (camelCase
keys, as the extension reads them); the TypedDicts below document and type-check them.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "RoutedRuntime",
    "ALL_COMMANDS",
    "CMD_APPLY_MODEL",
    "CMD_DEBUG",
    "CMD_DEPLOY",
    "CMD_LIST_ENDPOINTS",
    "CMD_MODEL_ALTERNATIVES",
    "CMD_REBUILD_KEPT",
    "CMD_RUN",
    "CMD_RUNTIME_STATUS",
    "CMD_SELECT_RUNTIME",
    "CMD_SWAP_MODEL",
    "NOTIFY_DEPLOY_RESULT",
    "NOTIFY_RUNTIME_STATUS",
    "NOTIFY_RUN_LOG",
    "NOTIFY_RUN_RESULT",
    "NOTIFY_RUN_STARTED",
    "ApplyModelArgs",
    "ApplyModelResult",
    "DeployArgs",
    "DeployError",
    "DeployKept",
    "DeployResult",
    "EndpointListItem",
    "KeptStale",
    "RebuildKeptArgs",
    "RebuildKeptResult",
    "RebuiltEndpoint",
    "ErrorFrame",
    "ListEndpointsArgs",
    "ListEndpointsResult",
    "LogEntry",
    "ModelAlternative",
    "ModelAlternativesArgs",
    "ModelAlternativesResult",
    "RemoteError",
    "RunArgs",
    "RunImage",
    "RunLog",
    "RunResult",
    "RunRetry",
    "RunStarted",
    "RunStartedReply",
    "RunWarning",
    "DebugStartedReply",
    "RuntimeGpu",
    "RuntimeStatus",
    "SelectRuntimeArgs",
    "SwapModelArgs",
]

# --- commands (workspace/executeCommand); each takes one argument object -------------------
# The `slipstream.server.` namespace keeps them apart from the extension's own `slipstream.*`.
CMD_RUN = "slipstream.server.run"
CMD_MODEL_ALTERNATIVES = "slipstream.server.modelAlternatives"
CMD_APPLY_MODEL = "slipstream.server.applyModel"
CMD_SWAP_MODEL = "slipstream.server.swapModel"
CMD_SELECT_RUNTIME = "slipstream.server.selectRuntime"
CMD_RUNTIME_STATUS = "slipstream.server.runtimeStatus"
CMD_DEPLOY = "slipstream.server.deploy"
CMD_LIST_ENDPOINTS = "slipstream.server.listEndpoints"
CMD_DEBUG = "slipstream.server.debug"  # the Debug lens: the Run call under the debugger
# load an endpoint's kept objects again (those running old code after a reload) and re-run setup()
CMD_REBUILD_KEPT = "slipstream.server.rebuildKept"

ALL_COMMANDS = (
    CMD_RUN,
    CMD_MODEL_ALTERNATIVES,
    CMD_APPLY_MODEL,
    CMD_SWAP_MODEL,
    CMD_SELECT_RUNTIME,
    CMD_RUNTIME_STATUS,
    CMD_DEPLOY,
    CMD_LIST_ENDPOINTS,
    CMD_DEBUG,
    CMD_REBUILD_KEPT,
)

# --- notifications (server -> client) ---------------------------------------------------
NOTIFY_RUN_STARTED = "slipstream/runStarted"
NOTIFY_RUN_LOG = "slipstream/runLog"
NOTIFY_RUN_RESULT = "slipstream/runResult"
NOTIFY_DEPLOY_RESULT = "slipstream/deployResult"
NOTIFY_RUNTIME_STATUS = "slipstream/runtimeStatus"


# --- command arguments and results ------------------------------------------------------
class _RunArgsRequired(TypedDict):
    uri: str
    endpoint: str


class RunArgs(_RunArgsRequired, total=False):
    method: str | None
    kwargs: dict[str, Any]  # without it, the endpoint's `example` is used


class RunStartedReply(TypedDict):
    runId: str


class DebugStartedReply(TypedDict):
    """CMD_DEBUG's answer: the daemon's DAP relay for the editor's debug adapter connection."""

    runId: str
    port: int  # on 127.0.0.1
    session: str
    remoteRoot: str  # the worker's copy of the project (pathMappings' remoteRoot)
    localRoot: str
    call: str  # the call's id on the runtime (GET /v1/calls/{call})


class ModelAlternativesArgs(TypedDict):
    uri: str
    endpoint: str


class ModelAlternative(TypedDict):
    id: str
    label: str
    description: str
    paramsB: float | None
    vramGb: float | None  # estimated inference memory
    fits: bool  # on the endpoint's GPU
    pricePerSecond: float | None  # the endpoint's GPU if it fits, else the cheapest that does


class ModelAlternativesResult(TypedDict):
    current: str | None
    kind: str | None
    items: list[ModelAlternative]


class ApplyModelArgs(TypedDict):
    uri: str
    endpoint: str
    modelId: str


class ApplyModelResult(TypedDict):
    applied: bool


class SwapModelArgs(TypedDict):
    uri: str
    endpoint: str


class SelectRuntimeArgs(TypedDict, total=False):
    url: str
    token: str | None
    embedded: bool


class DeployArgs(TypedDict, total=False):
    uri: str


class ListEndpointsArgs(TypedDict, total=False):
    uri: str


class EndpointListItem(TypedDict):
    uri: str
    name: str
    gpu: str  # the catalog label of the first choice ("H100", "H100:2"), or "CPU"
    line: int  # zero-based line of the decorator
    methods: list[str]  # public methods of a class endpoint; [] for functions


class ListEndpointsResult(TypedDict):
    endpoints: list[EndpointListItem]


class RebuildKeptArgs(TypedDict, total=False):
    uri: str  # required: a file of the project
    endpoint: str  # default: the project's endpoints with stale kept objects, else the file's
    keys: list[str]  # keep() keys (repr or str); default: the stale ones, else all it keeps


class KeptStale(TypedDict):
    """A kept object that still runs its old class's code after a reload (worker/follow.py)."""

    endpoint: str
    key: str  # repr of the keep() key: "'gpt'"
    path: str  # where in the kept value: "(the kept object)", "model.cfg"
    cls: str  # module.qualname of the class it runs: "model.GPT"
    why: str  # "GPT.__init__ changed: the kept object was built by the old one"


class RebuiltEndpoint(TypedDict):
    endpoint: str
    workers: int  # workers that loaded again (0: none running; the next call builds anew)
    released: list[str]  # the keep() keys loaded again
    modelLoads: int
    rebuildS: float
    stale: list[KeptStale]  # still running old code afterwards
    errors: list[DeployError]  # setup() failures (type, message), or the runtime's refusal


class RebuildKeptResult(TypedDict):
    ok: bool  # every endpoint rebuilt without an error
    message: str  # one line per endpoint, for a notification
    endpoints: list[RebuiltEndpoint]


# --- notification payloads --------------------------------------------------------------
class RunStarted(TypedDict):
    runId: str
    uri: str
    endpoint: str
    method: str | None
    gpu: str  # as in EndpointListItem
    startedAt: float  # seconds since the epoch
    runtime: NotRequired[str]  # with [runtimes] in slipstream.toml: the runtime the run goes to


class RunLog(TypedDict):
    runId: str
    stream: Literal["stdout", "stderr"]
    text: str


class LogEntry(TypedDict):
    stream: str
    text: str


class RunImage(TypedDict):
    path: str  # PNG in the cache folder
    thumbnail: str  # data:image/png;base64,... (<= 256 px)
    width: int
    height: int


class ErrorFrame(TypedDict):
    file: str  # absolute local path when it maps into the workspace
    line: int  # one-based, as in tracebacks
    name: str


class RemoteError(TypedDict):
    type: str
    message: str
    traceback: str
    frames: list[ErrorFrame]


class _RunRetryRequired(TypedDict):
    attempt: int  # 1 for the first failed attempt run again
    reason: str  # short: "worker crashed", "timed out", "CUDA out of memory on H100, moved to A100-80GB", "KeyError"
    type: str  # the failure's error type ("WorkerCrashed", "torch.OutOfMemoryError", ...)
    message: str
    gpu: str  # the GPU the failed attempt ran on


class RunRetry(_RunRetryRequired, total=False):
    movedTo: str  # CUDA out of memory: the next GPU of the fallback list that ran it


class _RunResultRequired(TypedDict):
    runId: str
    uri: str
    endpoint: str
    method: str | None
    gpu: str  # "H100" or "CPU"
    status: Literal["ok", "error"]
    durationS: float
    costUsd: float
    images: list[RunImage]
    logs: list[LogEntry]


class RunWarning(TypedDict):
    """Something the run card shows above the output: kept objects running old code."""

    kind: Literal["kept-stale"]
    message: str
    endpoint: str
    keys: list[str]  # the stale keep() keys (slipstream.server.rebuildKept rebuilds them)


class RunResult(_RunResultRequired, total=False):
    """A result is `text` (a str, or the repr of an object JSON cannot show), `json`, or a
    lone image (only `images`). Images nested in JSON are replaced by
    {"$image": {"index", "path", "width", "height"}}, `index` pointing into `images`."""

    text: str
    json: Any
    error: RemoteError
    retries: list[
        RunRetry
    ]  # each failed attempt the runtime ran again (retries=, a CUDA out-of-memory move)
    runtime: str  # with [runtimes] in slipstream.toml: the runtime that ran it
    warnings: list[RunWarning]  # the endpoint's kept objects run old code; absent when none


class DeployError(TypedDict, total=False):
    type: str
    message: str
    file: str | None  # absolute local path
    line: int | None  # one-based


class _DeployResultRequired(TypedDict):
    ok: bool
    changed: list[str]  # absolute local paths of the files this generation changed
    uploaded: int
    durationMs: float


class DeployKept(TypedDict):
    updated: int  # kept objects that now run the saved code (weights in place)
    stale: list[KeptStale]  # those that still run their old code (rebuild them)


class DeployResult(_DeployResultRequired, total=False):
    generation: int | str
    error: DeployError
    kept: DeployKept  # after a reload of workers with kept objects; absent otherwise


class RuntimeGpu(TypedDict):
    name: str
    memoryGb: float
    count: int


class RoutedRuntime(TypedDict):
    """One runtime of a project with [runtimes] in slipstream.toml (docs/runtimes.md)."""

    name: str
    url: str  # "embedded" for the embedded one
    kind: Literal["embedded", "remote"]
    connected: bool
    gpus: list[RuntimeGpu]
    spendUsd: float
    endpoints: list[str]  # the project's endpoints routed to it


class RuntimeStatus(TypedDict):
    url: str | None
    kind: Literal["embedded", "remote"]
    connected: bool
    gpus: list[RuntimeGpu]
    spendUsd: float
    endpoints: int
    runtimes: NotRequired[list[RoutedRuntime]]  # with [runtimes]: each runtime, in order
