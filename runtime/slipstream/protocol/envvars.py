"""The SLIPSTREAM_* environment variables that pass facts between processes (the SDK, the
runtime server, its workers, the editor's daemon) or that a user sets: one name each, imported
wherever it is read or set (the daemon, which imports the SDK and not the protocol, through
slipstream.sdk.envvars). Tests may spell them out."""

from __future__ import annotations

# --- which runtime, and how to reach it ----------------------------------------------------
RUNTIME_URL = "SLIPSTREAM_RUNTIME_URL"  # the runtime the SDK calls (else the embedded one)
TOKEN = "SLIPSTREAM_TOKEN"  # its bearer token
DEV_TOKEN = "SLIPSTREAM_DEV_TOKEN"  # the bearer token `slipstream dev`'s HTTP endpoints require
TOKEN_PREFIX = (
    "SLIPSTREAM_TOKEN_"  # + a [runtimes.NAME]'s name: that runtime's token (sdk/routing.py)
)
ROUTING_FILE = "SLIPSTREAM_ROUTING_FILE"  # in workers: the project's routing table (sdk/routing.py)
CA_BUNDLE = "SLIPSTREAM_CA_BUNDLE"  # a CA file an https runtime's certificate is checked against
ALLOW_INSECURE = (
    "SLIPSTREAM_ALLOW_INSECURE"  # "1" (or "runtime", in workers): a token over plain http
)
TRANSPORT = "SLIPSTREAM_TRANSPORT"  # "http": calls never use the binary data channel
RUNTIME_PATIENCE = (
    "SLIPSTREAM_RUNTIME_PATIENCE"  # seconds the SDK waits for a runtime that went away (30)
)
SSH_DIR = "SLIPSTREAM_SSH_DIR"  # where ssh:// runtimes' control sockets and forwards live
SSH_CONFIG = "SLIPSTREAM_SSH_CONFIG"  # an ssh config file passed as -F

# --- in workers ------------------------------------------------------------------------------
IN_RUNTIME = "SLIPSTREAM_IN_RUNTIME"  # set in workers: a call from endpoint code is a nested call
PROJECT = "SLIPSTREAM_PROJECT"  # set in workers: nested calls stay in their project
WORKER_SECRET = "SLIPSTREAM_WORKER_SECRET"  # a Ray actor's worker: the secret its channel checks
RAY_NODE_ID = "SLIPSTREAM_RAY_NODE_ID"  # a Ray actor's worker: the node it runs on
DEBUG_BREAKPOINTS = (
    "SLIPSTREAM_DEBUG_BREAKPOINTS"  # "1": breakpoint() waits for a debugger (run --debug)
)
DEBUG_ATTACH_TIMEOUT = "SLIPSTREAM_DEBUG_ATTACH_TIMEOUT"  # seconds a stopped call waits for one
CACHE = "SLIPSTREAM_CACHE"  # a worker's (and the daemon's) cache folder
NO_SHM = "SLIPSTREAM_NO_SHM"  # "1": no shared memory for large payloads

# --- slipstream serve ----------------------------------------------------------------------
HOME = "SLIPSTREAM_HOME"  # what outlives a served runtime (default ~/.slipstream)
STORE = "SLIPSTREAM_STORE"  # the code store's folder
SESSION_LEASE = (
    "SLIPSTREAM_SESSION_LEASE"  # serve's --session-lease default: e.g. 60s (server/sessions.py)
)
ENV_CACHE = "SLIPSTREAM_ENV_CACHE"  # the embedded runtime's dependency environments (~/.cache/slipstream/envs)
FAKE_GPUS = "SLIPSTREAM_FAKE_GPUS"  # "H100,A100-80GB", "4xH100@24": a GPU inventory for tests
RAY_WORKER_CPUS = "SLIPSTREAM_RAY_WORKER_CPUS"  # CPUs per Ray actor
RAY_AUTOSCALE = "SLIPSTREAM_RAY_AUTOSCALE"  # "1": calls wait for the cluster to add a node
RAY_WORKER_HOST = "SLIPSTREAM_RAY_WORKER_HOST"  # the host Ray nodes reach the runtime at

# --- the SDK's output, the daemon --------------------------------------------------------------
PROGRESS = "SLIPSTREAM_PROGRESS"  # "1": a long .map shows its progress on stderr
PROGRESS_EVERY = "SLIPSTREAM_PROGRESS_EVERY"  # seconds between its lines
LOG_LEVEL = "SLIPSTREAM_LOG_LEVEL"  # the editor daemon's log level


def without_runtime_token(env: dict[str, str]) -> dict[str, str]:
    """`env` less the runtime's own token: a process that runs user code (a worker, the fork
    server, the scanner) gets only its project's narrowed credential (server/credentials.py),
    never the token that reaches every project and admin route."""
    return {k: v for k, v in env.items() if k != TOKEN}
