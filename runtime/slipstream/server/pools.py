"""Worker pools: one per endpoint, scaling between min and max workers.

The pool logic (queue, dispatch, scaling, timeouts, crash handling, generation switching) is
the same for every backend; a backend only knows how to start a worker and talk to it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import shm
from ..protocol.envvars import without_runtime_token
from ..protocol.errors import ErrorInfo
from ..protocol.ipc import ServerSide
from ..protocol.kinds import ErrorKind, WorkerState
from ..protocol.logtext import KEEP_LINES, not_kept_note, progress_lines
from ..protocol.messages import EndpointStatus, stale_text
from ..spec.catalog import cost as price_cost
from ..spec.endpoint_spec import EndpointSpec
from .backend import Backend, GpuFallbacks, Placement
from .failures import PoolError
from .gpus import Device, inventory, matches
from .logs import LogSink
from .retrying import run_with_retries
from .store import Generation

if TYPE_CHECKING:
    from .allocator import GpuAllocator, Hold
    from .sessions import Sessions

__all__ = [
    "Pool",
    "Call",
    "WorkerHandle",
    "ChannelWorker",
    "LocalBackend",
    "PoolError",
    "exit_reason",
]

_ids = itertools.count(1)
STARTUP_LOG_LINES = 500  # a worker's import/setup lines kept for its next call (the rest: the log)

# server/debug.py installs its handlers here ("message": a worker's debug messages, "exit": a
# worker gone): pools never import it, so the server's modules form no cycle
DEBUG_HOOKS: dict[str, Callable[..., None]] = {}


def _lines(entry: dict[str, str]) -> int:
    return entry.get("text", "").count("\n")


def add_log(call: Call, entry: dict[str, str]) -> None:
    """Keep a chunk of the call's output for its reply: the last KEEP_LINES lines (a quarter
    more before trimming, so trimming is rare), led by a note saying how many were left out
    (they went to /v1/logs live)."""
    call.logs.append(entry)
    call.log_lines += _lines(entry)
    if call.log_lines <= KEEP_LINES * 5 // 4:
        return
    first = 1 if call.log_note else 0  # logs[0] is the note
    cut = first
    while cut < len(call.logs) - 1 and call.log_lines - _lines(call.logs[cut]) >= KEEP_LINES:
        call.log_lines -= _lines(call.logs[cut])
        call.dropped_lines += _lines(call.logs[cut])
        cut += 1
    if cut == first:
        return
    del call.logs[first:cut]
    note = {"stream": "stderr", "text": not_kept_note(call.dropped_lines)}
    if first:
        call.logs[0] = note
    else:
        call.logs.insert(0, note)
        call.log_note = True


@dataclass
class Call:
    method: str | None
    fmt: str  # pickle | json
    body: bytes | bytearray | memoryview
    stream: bool = False
    id: int = field(default_factory=lambda: next(_ids))
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    items: asyncio.Queue[Any] | None = None
    logs: list[dict[str, str]] = field(default_factory=list)  # the tail (add_log)
    log_lines: int = 0  # lines in `logs`
    dropped_lines: int = 0  # earlier lines left out of `logs` (logtext.KEEP_LINES)
    log_note: bool = False  # logs[0] says how many
    queued_at: float = field(default_factory=time.perf_counter)
    worker: WorkerHandle | None = None
    duration: float = 0.0
    started: float = 0.0
    dispatched: asyncio.Event = field(default_factory=asyncio.Event)
    shm_ref: dict[str, Any] | None = None  # the body also lies in shared memory here
    tag: str = ""  # the caller's name for this call: its log lines carry it (live logs in editors)
    cancelled: str = ""  # why, once its caller went away
    gone: Callable[[], bool] | None = (
        None  # whether its caller has gone away (checked before it starts)
    )
    retries: list[dict[str, Any]] = field(
        default_factory=list
    )  # each failed attempt run again (retries.py)
    ran_in: Any = (
        None  # the pool that ran its last attempt (another GPU's after a CUDA out-of-memory move)
    )
    gen: str = ""  # the generation it ran on: its worker's when it started (what the worker says)
    debug: Any = None  # a call under the debugger: True, then its DebugSession once its worker waits (server/debug.py)


class WorkerHandle(Protocol):
    """One worker as a pool drives it; a backend's create() makes one (ChannelWorker below)."""

    id: str
    pid: int | None
    device: str
    devices: tuple[int, ...]
    started_by: str  # how it started: "fork" | "spawn" | "ray" ("" until it did)
    note: str  # said in its "ready" log line (why it was spawned rather than forked...)
    shares_memory: bool  # call bodies and results may travel in shared memory (this machine's)

    async def start(self, init: dict[str, Any]) -> dict[str, Any]: ...
    def send(self, header: dict[str, Any], body: Any = ()) -> None: ...
    def kill(self) -> None: ...
    async def stop(self, grace: float = 2.0) -> None: ...


def exit_reason(returncode: int | None, killed_by_us: str | None) -> str:
    if killed_by_us:
        return killed_by_us
    if returncode is None:
        return "the worker's connection closed unexpectedly"
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGKILL:
            return (
                f"the worker was killed by {name}, most likely by the out-of-memory killer: "
                "it used more memory than the machine (or its limit) allows"
            )
        if sig == signal.SIGSEGV:
            return f"the worker crashed with {name} (segmentation fault) in native code"
        return f"the worker was killed by {name}"
    return f"the worker exited with code {returncode}"


class ChannelWorker:
    """What every backend's worker handle shares: replies awaited by their op, sends on the
    worker's channel, and a graceful stop. Subclasses set `_proto` once connected, `_gone`
    when the worker is gone, and say how to kill it."""

    _proto: ServerSide | None = None
    _gone: asyncio.Event | None = None
    _killed: str | None = None
    _exited: bool = False
    started_by = ""
    note = ""
    shares_memory = False

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def kill(self, reason: str = "the worker was stopped") -> None:
        raise NotImplementedError

    def _expect(self, *ops: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        for op in ops:
            self._waiters[op] = fut
        return fut

    async def request(
        self, header: dict[str, Any], *replies: str, timeout: float | None = None
    ) -> dict[str, Any]:
        fut = self._expect(*replies)
        self.send(header)
        return await asyncio.wait_for(fut, timeout)

    def _take_reply(self, header: dict[str, Any]) -> bool:
        """Hand a message to whoever awaits its op (start, request); False when nobody does."""
        fut = self._waiters.get(header.get("op", ""))
        if fut is None:
            return False
        for k in [k for k, v in self._waiters.items() if v is fut]:
            del self._waiters[k]
        if not fut.done():
            fut.set_result(header)
        return True

    def _fail_waiters(self, reason: str) -> None:
        for fut in set(self._waiters.values()):
            if not fut.done():
                fut.set_exception(PoolError(ErrorKind.CRASH, reason))
        self._waiters.clear()

    def send(self, header: dict[str, Any], body: Any = ()) -> None:
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            raise PoolError(ErrorKind.CRASH, "the worker is not running")
        proto.send(header, body)

    def _never_started(self) -> None:
        """stop() on a worker that is not running (nothing to wait for)."""

    def _did_not_exit(self) -> None:
        """stop() when the worker outlived its kill too."""

    async def stop(self, grace: float = 2.0) -> None:
        self._killed = self._killed or "the worker was stopped (scaled down)"
        try:
            self.send({"op": "exit"})
        except PoolError:
            pass
        if self._gone is None or self._exited:
            self._never_started()
            return
        try:
            await asyncio.wait_for(self._gone.wait(), grace)
        except TimeoutError:
            self.kill(self._killed)
            try:
                await asyncio.wait_for(self._gone.wait(), 5)
            except TimeoutError:
                self._did_not_exit()


class LocalWorker(ChannelWorker):
    """A worker process on this machine, spoken to over a socketpair: forked from the
    environment's fork server when one is ready, else spawned fresh."""

    def __init__(
        self,
        pool_name: str,
        on_message: Callable[[LocalWorker, dict[str, Any], bytearray], None],
        on_exit: Callable[[LocalWorker, str], None],
        env: dict[str, str],
        devices: tuple[int, ...] = (),
        memory_limit: int | None = None,
        python: str | None = None,
        forkserver: Any = None,
    ) -> None:
        super().__init__()
        self.id = f"{pool_name}-{next(_ids)}"
        self.pid: int | None = None
        self.devices = devices
        self.device = "cpu"
        self.shares_memory = shm.available()
        self.started_by = ""  # fork | spawn
        self.note = ""
        self.imported = False  # a scanner: it imported a generation it can go back to
        self._on_message = on_message
        self._on_exit = on_exit
        self._env = env
        self._memory_limit = memory_limit
        self._python = python or sys.executable
        self._forkserver = forkserver
        self._proc: asyncio.subprocess.Process | None = None
        self._returncode: int | None = None

    async def start(self, init: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self._gone = asyncio.Event()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        overrides = dict(self._env)
        if self.devices:
            overrides["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.devices))
        hello = self._expect("hello")
        fs = self._forkserver
        if fs is not None and fs.usable:
            try:
                self.pid = await fs.fork(
                    child.fileno(), overrides, self._memory_limit, self._forked_exit
                )
                self.started_by = "fork"
            except Exception as exc:  # noqa: BLE001 - fall back to a fresh process, and say so
                self.note = f"fork failed ({exc}); spawned a fresh process"
        elif fs is not None:
            self.note = f"spawned a fresh process ({fs.reason or 'fork server still starting'})"
        if self.pid is None:
            await self._spawn(child, overrides)
        child.close()
        _, self._proto = await loop.create_unix_connection(
            lambda: ServerSide(self._message, self._lost), sock=parent
        )
        await hello
        if init:
            self.send(init)
            reply = await self._expect("ready", "fatal")
            self.device = reply.get("device", "cpu")
            return reply
        return {}

    async def _spawn(self, child: socket.socket, overrides: dict[str, str]) -> None:
        env = {**without_runtime_token(dict(os.environ)), **overrides}
        limit = self._memory_limit

        def preexec() -> None:
            os.setsid()
            if limit:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self._proc = await asyncio.create_subprocess_exec(
            self._python,
            "-P",
            "-m",
            "slipstream.worker.main",
            "--fd",
            str(child.fileno()),
            pass_fds=(child.fileno(),),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=preexec,
        )
        self.pid = self._proc.pid
        self.started_by = "spawn"
        asyncio.ensure_future(self._reap())

    def _message(self, header: dict[str, Any], body: bytearray) -> None:
        if not self._take_reply(header):
            self._on_message(self, header, body)

    def _lost(self, exc: Exception | None) -> None:
        if self._returncode is None:
            return  # the process's exit (reaped, or reported by the fork server) follows

    async def _reap(self) -> None:
        assert self._proc is not None
        self._returncode = await self._proc.wait()
        self._report_exit()

    def _forked_exit(self, code: int) -> None:
        self._returncode = code
        self._report_exit()

    def _report_exit(self) -> None:
        if self._exited:
            return
        self._exited = True
        if self._gone is not None:
            self._gone.set()
        reason = exit_reason(self._returncode, self._killed)
        self._fail_waiters(reason)
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._on_exit(self, reason)

    def kill(self, reason: str = "the worker was stopped") -> None:
        if self._killed is None:
            self._killed = reason
        if self.pid is not None and not self._exited:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class LocalBackend:
    """Workers as processes of this machine, placed on its GPUs (a `backend.Backend`)."""

    name = "local"
    forks = True

    def __init__(self, memory_limit: int | None = None) -> None:
        self.memory_limit = memory_limit
        self._devices: list[Device] | None = None

    def inventory(self) -> list[Device]:
        """This machine's GPUs, listed once (nvidia-smi, or SLIPSTREAM_FAKE_GPUS in tests)."""
        if self._devices is None:
            self._devices = inventory()
        return self._devices

    def cluster(self) -> None:
        return None

    def placement(self, spec: EndpointSpec, gpu_fallback: bool = False) -> Placement:
        """GPU slots for the pool's workers, a note for a fallback, or why it cannot run here."""
        req = spec.gpu_request
        if req.is_cpu:
            return Placement()
        devices = self.inventory()
        for choice in req.choices:
            found = matches(devices, choice.gpu.name)
            if len(found) >= choice.count:
                idx = [d.index for d in found]
                slots = [
                    tuple(idx[i : i + choice.count])
                    for i in range(0, len(idx) - choice.count + 1, choice.count)
                ]
                return Placement(slots, gpu=choice.gpu.name, count=choice.count)
        have = ", ".join(sorted({d.name for d in devices})) or "no GPU"
        if gpu_fallback:
            if devices:
                assert req.primary is not None  # a GPU request has a first choice
                first = tuple(d.index for d in devices[: req.primary.count])
                return Placement(
                    [first],
                    f"this runtime has no {req.label}; running on {devices[0].name} instead",
                    gpu=devices[0].canonical or devices[0].name,
                    count=len(first),
                )
            return Placement(
                note=f"this runtime has no GPU; {spec.name!r} ({req.label}) runs on the CPU"
            )
        return Placement(
            unavailable=(
                f"endpoint {spec.name!r} asks for {req.label} but this runtime has {have}. "
                "Point SLIPSTREAM_RUNTIME_URL at a runtime with that GPU, add a fallback (gpu=[...]), "
                "or start this one with --gpu-fallback to run on what it has."
            )
        )

    def gpu_fallbacks(self, spec: EndpointSpec) -> GpuFallbacks:
        """The GPUs of the fallback list after the one the pool is placed on that this machine
        has, as (label, device slots): where a call that ran out of CUDA memory moves next."""
        out: GpuFallbacks = []
        placed = False
        for choice in spec.gpu_request.choices:
            found = matches(self.inventory(), choice.gpu.name)
            if len(found) < choice.count:
                continue
            idx = [d.index for d in found]
            slots = [
                tuple(idx[i : i + choice.count])
                for i in range(0, len(idx) - choice.count + 1, choice.count)
            ]
            if placed:
                out.append((choice.label, slots))
            placed = True
        return out

    def create(self, pool: Pool, env: dict[str, str], devices: tuple[int, ...]) -> LocalWorker:
        pyenv = pool.pyenv
        return LocalWorker(
            pool.name,
            pool._on_worker_message,
            pool._on_worker_exit,
            env,
            devices,
            self.memory_limit,
            python=getattr(pyenv, "python", None),
            forkserver=getattr(pyenv, "forkserver", None),
        )


REBUILD_HINT = (
    'Rebuild it to apply: `slipstream rebuild {name}`, the editor\'s "Rebuild kept model", '
    "or keep(key, load, version=...) with a new version"
)


def _resolve(f: asyncio.Future[dict[str, Any]] | None, reply: dict[str, Any]) -> None:
    if f is not None and not f.done():
        f.set_result(reply)


@dataclass
class _WState:
    handle: Any
    state: WorkerState = WorkerState.STARTING  # one of TRACKED_WORKER_STATES
    gen: str = ""
    inflight: dict[int, Call] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    start_s: float | None = None
    last_active: float = field(default_factory=time.monotonic)
    calls: int = 0
    kept: dict[str, Any] = field(default_factory=dict)  # its keep() objects vs the code (follow.py)
    loading: asyncio.Future[dict[str, Any]] | None = None  # its last load's answer ("loaded")
    rebuilding: asyncio.Future[dict[str, Any]] | None = None  # its last rebuild's ("rebuilt")
    # what its import and setup() printed while no call was on it: the next call's logs carry
    # it, so whoever made that call (`slipstream run`, the editor's run card) sees it once
    startup_logs: list[dict[str, str]] = field(default_factory=list)
    hold: Hold | None = None  # the GPUs it holds in the runtime's allocator (allocator.py)


@dataclass
class PoolStats:
    calls: int = 0
    errors: int = 0
    crashes: int = 0
    timeouts: int = 0
    overloads: int = 0
    cancelled: int = 0  # calls whose caller went away: dropped from the queue, or interrupted
    cancel_kills: int = 0  # workers replaced because a cancelled call did not stop in time
    retries: int = 0  # failed attempts run again (the endpoint's retries=)
    gpu_fallbacks: int = (
        0  # calls moved to the next GPU of the fallback list after CUDA out of memory
    )
    busy_s: float = 0.0
    cost_usd: float = 0.0
    reloads: int = 0
    restarts: int = 0
    model_loads: int = 0
    started_workers: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


class Pool:
    # seconds a cancelled call has to stop before its worker is replaced (slipstream serve --cancel-grace)
    cancel_grace: float = 5.0

    def __init__(
        self,
        info: dict[str, Any],
        spec: EndpointSpec,
        gen: Generation,
        backend: Backend,
        logs: LogSink,
        *,
        env: dict[str, str],
        placement: Placement | None = None,
        max_queue: int = 256,
        pyenv: Any = None,
        project: str | None = None,
        target: str | None = None,
        gpu_fallbacks: GpuFallbacks | None = None,
        siblings: dict[str, Pool] | None = None,
        sessions: Sessions | None = None,
        allocator: GpuAllocator | None = None,
    ) -> None:
        self.name = spec.name
        # the runtime's one GPU allocator: every worker takes its GPUs there (allocator.py)
        self.allocator = allocator
        self.waiting = ""  # why a queued call waits for a GPU (who holds them), "" when not
        self._wake_timer: asyncio.TimerHandle | None = None
        # the runtime's attached dev sessions: while one holds this project, a warm worker
        # stays past idle_timeout, whose clock starts when the last session ends (sessions.py)
        self.sessions = sessions
        self.project = project  # the key of the project whose endpoint this is
        self.target = (
            target or spec.name
        )  # the endpoint its workers run (a with_options variant runs its base's)
        self.info = info
        self.spec = spec
        self.gen = gen
        self.backend = backend
        self.logs = logs
        self.env = env
        self.max_queue = max_queue
        self.pyenv: Any = pyenv  # the Python environment (and fork server) workers start in
        self._place(placement or Placement())
        # the later GPUs of gpu=[...] this runtime has, as (label, device slots): where a call that
        # ran out of CUDA memory here moves (fallback_pool); siblings: the project's pools, to join
        self.gpu_fallbacks: GpuFallbacks = gpu_fallbacks or []
        self.siblings = siblings
        self._fallback: Pool | None = None
        self.workers: list[_WState] = []
        self.queue: deque[Call] = deque()
        self.stats = PoolStats()
        self.last_error: str = ""
        self._closed = False
        self._fatal: ErrorInfo | None = None
        self._reaper = asyncio.ensure_future(self._reap_idle())
        self._pump()

    def _place(self, placement: Placement) -> None:
        self.placement = placement
        self.device_slots = placement.slots
        self.fallback_note = placement.note  # runs on other hardware than it asked for
        self.unavailable = placement.unavailable  # why it cannot run here (calls are refused)

    # --- public -----------------------------------------------------------------------
    async def call(self, call: Call) -> Call:
        """Queue a call and wait for it, retried as the spec's retries say (retries.py); raises
        PoolError for runtime-side failures."""
        if call.debug:
            return await self._call_once(call)  # a debugged call is never run again
        return await run_with_retries(self, call, self._call_once)

    async def _call_once(self, call: Call) -> Call:
        if self.unavailable:
            raise PoolError(ErrorKind.UNAVAILABLE, self.unavailable)
        never = self._never_fits()
        if never:
            raise PoolError(
                ErrorKind.UNAVAILABLE, f"endpoint {self.name!r} can never run here: {never}"
            )
        if self._closed:
            raise PoolError(
                ErrorKind.UNAVAILABLE, f"endpoint {self.name!r} was removed by a newer deploy"
            )
        if len(self.queue) >= self.max_queue:
            self.stats.overloads += 1
            raise PoolError(
                ErrorKind.OVERLOADED,
                f"endpoint {self.name!r} is overloaded: {len(self.queue)} calls queued, "
                f"{self._running()} running on {len(self.workers)} worker(s) (max {self.spec.workers_max}). "
                "Retry later, or raise workers=(min, max) or concurrency.",
            )
        self._fatal = None
        self.queue.append(call)
        self._pump()
        try:
            # the timeout counts from when a worker takes the call, not from when it was queued
            if not call.future.done():
                waiter = asyncio.ensure_future(call.dispatched.wait())
                try:
                    await asyncio.wait({waiter, call.future}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            if not call.future.done():
                remaining = self.spec.timeout - (time.perf_counter() - call.started)
                try:
                    await asyncio.wait_for(asyncio.shield(call.future), max(remaining, 0.001))
                except TimeoutError:
                    if call.debug is None:
                        self._on_timeout(call)
                    else:  # stopped in a debugger: no timeout (its session ends it, server/debug.py)
                        await asyncio.shield(call.future)
        except asyncio.CancelledError:
            # whoever awaited this call went away (closed connection, client timeout, Ctrl-C)
            self.cancel(call, "the caller went away")
            raise
        return call

    def fallback_pool(self) -> Pool | None:
        """The pool of the next GPU in the decorator's fallback list that this runtime has (made
        on first use, named `<endpoint>@<gpu>`, listed with the project's endpoints), or None."""
        if not self.gpu_fallbacks or self._closed:
            return None
        child = self._fallback
        if child is None or child._closed:
            import dataclasses

            label, slots = self.gpu_fallbacks[0]
            labels = list(self.spec.gpu)
            rest = tuple(labels[labels.index(label) :]) if label in labels else (label,)
            spec = dataclasses.replace(self.spec, name=f"{self.target}@{label}", gpu=rest)
            info = {
                **self.info,
                "name": spec.name,
                "gpu": label,
                "note": "",
                "unavailable": "",
                "gpu_fallback_of": self.name,
            }
            child = Pool(
                info,
                spec,
                self.gen,
                self.backend,
                self.logs,
                env=self.env,
                placement=Placement(slots),
                max_queue=self.max_queue,
                pyenv=self.pyenv,
                project=self.project,
                target=self.target,
                gpu_fallbacks=self.gpu_fallbacks[1:],
                siblings=self.siblings,
                sessions=self.sessions,
                allocator=self.allocator,
            )
            if self.siblings is not None:
                self.siblings[spec.name] = child
            self._fallback = child
        elif child.gen.id != self.gen.id:
            child.update(child.info, child.spec, self.gen)
        return child

    def cancel(self, call: Call, reason: str) -> None:
        """Drop a queued call, or interrupt a running one (its worker is replaced when the call
        has not stopped within cancel_grace seconds). Its caller is gone: nobody gets a reply."""
        if call.future.done() or call.cancelled:
            return
        call.cancelled = reason
        self.stats.cancelled += 1
        call.future.set_exception(
            PoolError(ErrorKind.CANCELLED, f"endpoint {self.name!r}: call cancelled ({reason})")
        )
        call.future.exception()  # retrieved: nobody awaits it any more
        if call in self.queue:
            self.queue.remove(call)
            self.logs.emit(
                endpoint=self.name,
                stream="system",
                tag=call.tag,
                text=f"call {call.id} cancelled before it started ({reason}); dropped from the queue",
            )
            return
        w = self._state_of(call.worker) if call.worker is not None else None
        if w is None or call.id not in w.inflight:
            return
        self.logs.emit(
            endpoint=self.name,
            stream="system",
            tag=call.tag,
            text=f"call {call.id} cancelled ({reason}); interrupting it on worker {w.handle.id}",
        )
        try:
            w.handle.send({"op": "cancel", "id": call.id})
        except Exception:  # noqa: BLE001 - a worker that cannot hear it is replaced below
            pass
        # the slot stays taken until the worker answers; past the grace period it is replaced
        asyncio.get_running_loop().call_later(self.cancel_grace, self._cancel_overdue, w, call)

    def _cancel_overdue(self, w: _WState, call: Call) -> None:
        if w not in self.workers or call.id not in w.inflight:
            return  # it stopped in time
        self.stats.cancel_kills += 1
        self.logs.emit(
            endpoint=self.name,
            stream="system",
            tag=call.tag,
            text=f"worker {w.handle.id} did not stop cancelled call {call.id} within "
            f"{self.cancel_grace:g}s; replacing it",
        )
        w.inflight.pop(call.id, None)
        self._kill_worker(
            w,
            f"killed because cancelled call {call.id} did not stop within {self.cancel_grace:g}s",
            "its worker was replaced because a cancelled call on it did not stop",
        )

    def debug_release(self, w: _WState) -> None:
        """A debug session on `w` ended with its call finished: it serves calls again."""
        if w not in self.workers or w.state != WorkerState.DEBUGGING:
            return
        w.state = WorkerState.BUSY if w.inflight else WorkerState.WARM
        w.last_active = time.monotonic()
        if w.gen != self.gen.id and not w.inflight:
            self._send_load(w)
        self._pump()

    def _kill_worker(self, w: _WState, why: str, others: str) -> None:
        """Take `w` out of the pool and kill it (`why` goes to its log); the calls still on it
        fail as crashes saying `others`; then the queue moves on."""
        victims = list(w.inflight.values())
        w.inflight.clear()
        self._remove(w)
        w.handle.kill(why)
        for other in victims:
            if not other.future.done():
                other.future.set_exception(
                    PoolError(ErrorKind.CRASH, f"endpoint {self.name!r}: {others}")
                )
        self._pump()

    def update(
        self,
        info: dict[str, Any],
        spec: EndpointSpec,
        gen: Generation,
        replace: str = "",
        *,
        env: dict[str, str] | None = None,
        placement: Placement | None = None,
        pyenv: Any = None,
        gpu_fallbacks: GpuFallbacks | None = None,
    ) -> None:
        """A new generation: workers load it between calls, or are replaced when they must be.
        A deploy also passes the endpoint's new environment, placement and GPU fallbacks."""
        if pyenv is not None:
            self.pyenv = pyenv
        if env is not None:
            self.env = env
        if placement is not None:
            self._place(placement)
        if gpu_fallbacks is not None:
            self.gpu_fallbacks = gpu_fallbacks
        self.info, self.gen = info, gen
        old, self.spec = self.spec, spec
        changed = [f for f in ("gpu", "dependencies", "env") if getattr(old, f) != getattr(spec, f)]
        if changed and not replace:
            replace = f"{', '.join(changed)} changed"
        if replace:
            self.stats.restarts += 1
            self.logs.emit(
                endpoint=self.name, stream="system", text=f"replacing workers: {replace}"
            )
            for w in list(self.workers):
                self._retire(w)
        else:
            for w in self.workers:
                if w.state == WorkerState.WARM and not w.inflight:
                    self._send_load(w)
        self._pump()

    def running_before(self, gen: str) -> dict[str, int]:
        """The calls running now on code older than `gen`, counted by the generation they run
        on: they finish on it (a worker loads a new generation between calls)."""
        out: dict[str, int] = {}
        for w in self.workers:
            for c in w.inflight.values():
                if c.gen and c.gen != gen and not c.future.done():
                    out[c.gen] = out.get(c.gen, 0) + 1
        return out

    async def close(self) -> None:
        self._closed = True
        self._reaper.cancel()
        self._stop_waiting()
        for w in self.workers:
            self._release(w)
        while self.queue:
            c = self.queue.popleft()
            if not c.future.done():
                c.future.set_exception(
                    PoolError(ErrorKind.UNAVAILABLE, f"endpoint {self.name!r} was removed")
                )
        await asyncio.gather(*(w.handle.stop() for w in self.workers), return_exceptions=True)
        self.workers.clear()

    def describe(self) -> EndpointStatus:
        """The endpoint with its pool (GET /v1/endpoints/{name}; each of /v1/status's endpoints)."""
        lat = sorted(self.stats.latencies)
        need = self._gpu_need() if self.device_slots else None

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {
            "name": self.name,
            "module": self.info.get("module"),
            "file": self.info.get("file"),
            "line": self.info.get("line"),
            "kind": self.info.get("kind"),
            "methods": self.info.get("methods", []),
            "generator": self.info.get("generator", False),
            "streams": self.info.get("streams", []),
            "gpu": self.spec.gpu_label,
            "spec": self.spec.to_dict(),
            "generation": self.gen.id,
            "note": self.fallback_note,
            "unavailable": self.unavailable,
            "last_error": self.last_error,
            "stale": self.stale(),
            "pool": {
                "workers": [
                    {
                        "id": w.handle.id,
                        "state": self._public_state(w),
                        "started_by": w.handle.started_by,
                        "pid": w.handle.pid,
                        "device": w.handle.device,
                        "gpus": list(w.handle.devices),
                        "gpu_memory_gb": w.hold.gb if w.hold is not None else None,
                        "generation": w.gen,
                        "inflight": len(w.inflight),
                        "calls": w.calls,
                        "start_s": None if w.start_s is None else round(w.start_s, 4),
                        "started_at": w.started_at,
                    }
                    for w in self.workers
                ],
                "min": self.spec.workers_min,
                "max": self.spec.workers_max,
                "concurrency": self.spec.concurrency,
                "queued": len(self.queue),
                "max_queue": self.max_queue,
                "waiting": self.waiting,  # why queued calls wait for a GPU ("" when none do)
                "gpu_memory_gb": need[2] if need else None,
                "gpu_memory_basis": need[3] if need else "",
            },
            "stats": {
                "calls": self.stats.calls,
                "errors": self.stats.errors,
                "crashes": self.stats.crashes,
                "timeouts": self.stats.timeouts,
                "overloads": self.stats.overloads,
                "cancelled": self.stats.cancelled,
                "cancel_kills": self.stats.cancel_kills,
                "retries": self.stats.retries,
                "gpu_fallbacks": self.stats.gpu_fallbacks,
                "busy_s": round(self.stats.busy_s, 6),
                "cost_usd": round(self.stats.cost_usd, 8),
                "reloads": self.stats.reloads,
                "restarts": self.stats.restarts,
                "model_loads": self.stats.model_loads,
                "started_workers": self.stats.started_workers,
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
            },
            "project": self.project,
        }

    def _hold(self) -> tuple[int, float]:
        """(how many live workers stay however idle, when they started counting as idle): a
        project a dev session holds keeps at least one; its last session's end starts the clock."""
        attached, ended = (
            self.sessions.hold(self.project) if self.sessions is not None else (False, 0.0)
        )
        return max(self.spec.workers_min, 1 if attached else 0), ended

    def _public_state(self, w: _WState) -> WorkerState:
        """Its state, or IDLE for a warm worker unused for half the idle timeout (a scale-down
        candidate; a worker an attached session holds never is)."""
        if w.state != WorkerState.WARM:
            return w.state
        keep, ended = self._hold()
        live = sorted(
            (x for x in self.workers if x.state != WorkerState.RETIRING),
            key=lambda x: x.last_active,
        )
        if keep and w in live[-keep:]:
            return w.state
        if time.monotonic() - max(w.last_active, ended) >= self.spec.idle_timeout / 2:
            return WorkerState.IDLE
        return w.state

    # --- dispatch ---------------------------------------------------------------------
    def _running(self) -> int:
        return sum(len(w.inflight) for w in self.workers)

    def _pump(self) -> None:
        if self._closed:
            return
        conc = self.spec.concurrency
        while self.queue:
            w = self._free_worker(idle=bool(self.queue[0].debug))
            if w is None:
                break
            call = self.queue.popleft()
            if call.future.done():
                continue
            if call.gone is not None and call.gone():
                # its caller went away and the news has not reached us yet: never start it
                self.queue.appendleft(call)
                self.cancel(call, "the caller went away")
                continue
            self._dispatch(w, call)
        starting = sum(1 for w in self.workers if w.state == WorkerState.STARTING)
        live = [w for w in self.workers if w.state != WorkerState.RETIRING]
        want = max(self.spec.workers_min - len(live), 0)
        if self.queue and self._fatal is None:
            want = max(
                want, min(-(-len(self.queue) // conc) - starting, self.spec.workers_max - len(live))
            )
        for _ in range(max(want, 0)):
            if not self._start_worker(evict=bool(self.queue)):
                break

    def _free_worker(self, idle: bool = False) -> _WState | None:
        best = None
        for w in self.workers:
            if (
                w.state in (WorkerState.WARM, WorkerState.BUSY)
                and len(w.inflight) < self.spec.concurrency
                and not (idle and w.inflight)
            ):
                if best is None or len(w.inflight) < len(best.inflight):
                    best = w
        return best

    def _dispatch(self, w: _WState, call: Call) -> None:
        if w.gen != self.gen.id:
            self._send_load(w)
        w.inflight[call.id] = call
        w.state = WorkerState.BUSY
        w.calls += 1
        call.gen = w.gen  # a load sent before it runs first; calls in flight finish on their own
        for entry in w.startup_logs:  # its import and setup output, said at start (untagged)
            add_log(call, entry)
            # again for whoever follows this call's lines (?tag=): /v1/logs without a tag, which
            # had them when they were printed, skips these (replay)
            self.logs.emit(
                endpoint=self.name,
                worker=w.handle.id,
                call=call.id,
                tag=call.tag,
                replay=True,
                **entry,
            )
        w.startup_logs.clear()
        call.worker = w.handle
        call.ran_in = self
        call.started = time.perf_counter()
        call.dispatched.set()
        header: dict[str, Any] = {
            "op": "call",
            "id": call.id,
            "method": call.method,
            "format": call.fmt,
        }
        if call.debug:
            header["debug"] = True
            w.state = (
                WorkerState.DEBUGGING
            )  # nothing else is sent to it until its debug session ends (server/debug.py)
        if call.stream:
            header["stream"] = True
        body: list[Any] = [call.body]
        if w.handle.shares_memory:
            header["shm_reply"] = True
            if call.shm_ref:
                header["shm"] = call.shm_ref
                body = []
        try:
            w.handle.send(header, body)
        except Exception as exc:  # noqa: BLE001 - the exit handler fails the call
            self.logs.emit(endpoint=self.name, stream="system", text=f"send failed: {exc}")

    def _send_load(self, w: _WState) -> None:
        w.gen = self.gen.id
        if w.loading is None or w.loading.done():
            w.loading = asyncio.get_running_loop().create_future()
        w.handle.send(
            {
                "op": "load",
                "gen": self.gen.id,
                "gen_dir": str(self.gen.dir),
                "manifest": self.gen.files,
                "paths": self.gen.paths,
                "skipped": self.gen.skipped,
            }
        )

    def _devices_for_next(self) -> tuple[int, ...]:
        if not self.device_slots:
            return ()
        used = [w.handle.devices for w in self.workers]
        return min(self.device_slots, key=lambda d: used.count(d))

    # --- GPUs: the runtime's allocator (allocator.py) --------------------------------------
    def _gpu_need(self) -> tuple[list[int], int, float, str]:
        """(the GPUs its workers may take, how many each, GB on each, how the GB was decided)."""
        from .allocator import memory_need

        candidates = list(dict.fromkeys(i for slot in self.device_slots for i in slot))
        count = len(self.device_slots[0]) if self.device_slots else 0
        box = self.allocator.devices if self.allocator is not None else {}
        sizes = [box[i].memory_gb for i in candidates if i in box]
        gb, basis = memory_need(
            self.spec.gpu_memory,
            list(self.info.get("models") or []),
            count,
            min(sizes) if sizes else 0.0,
            len(box),
        )
        return candidates, count, gb, basis

    def _never_fits(self) -> str:
        if self.allocator is None or not self.device_slots:
            return ""
        candidates, count, gb, basis = self._gpu_need()
        why = self.allocator.never_fits(candidates, count, gb)
        return f"{why} (memory per GPU: {basis})" if why else ""

    def _take_gpus(self, evict: bool) -> tuple[bool, Hold | None]:
        """(whether a worker may start now, the GPUs it holds). A worker that does not fit now
        leaves its pool waiting: `waiting` says who holds the GPUs, and the pool pumps again
        when a GPU is given back (and every 0.25 s, as busy workers go idle)."""
        if self.allocator is None or not self.device_slots:
            return True, None
        from .allocator import Hold

        candidates, count, gb, basis = self._gpu_need()
        hold = self.allocator.take(
            candidates,
            count,
            gb,
            Hold(self.project or "", self.name, (), gb, owner=self),
            evict=evict,
        )
        if hold is not None:
            self._stop_waiting()
            return True, hold
        if evict:
            why = (
                f"waiting for {count} GPU(s) with {gb:g} GB free ({basis}): "
                + self.allocator.holders_text(candidates)
            )
            if why != self.waiting:
                self.logs.emit(endpoint=self.name, stream="system", text=why)
            self.waiting = why
        self.allocator.wait(self._wake)
        if self._wake_timer is None:
            self._wake_timer = asyncio.get_running_loop().call_later(0.25, self._wake_tick)
        return False, None

    def _wake(self) -> None:
        asyncio.get_running_loop().call_soon(self._pump)

    def _wake_tick(self) -> None:
        self._wake_timer = None
        self._pump()

    def _stop_waiting(self) -> None:
        self.waiting = ""
        if self.allocator is not None:
            self.allocator.unwait(self._wake)
        if self._wake_timer is not None:
            self._wake_timer.cancel()
            self._wake_timer = None

    def _release(self, w: _WState) -> None:
        if self.allocator is not None and w.hold is not None:
            hold, w.hold = w.hold, None
            self.allocator.release(hold)

    def _evict(self, w: _WState) -> bool:
        """Stop `w` if it is idle, to give its GPUs to another endpoint's queued call."""
        if w not in self.workers or w.state != WorkerState.WARM or w.inflight:
            return False
        self.logs.emit(
            endpoint=self.name,
            stream="system",
            text=f"worker {w.handle.id} idle; stopped to free GPU {','.join(map(str, w.handle.devices))} "
            "for another endpoint's call",
        )
        w.hold = None  # the allocator takes it back itself
        self._remove(w)
        asyncio.ensure_future(w.handle.stop())
        return True

    def _start_worker(self, evict: bool = False) -> bool:
        ok, hold = self._take_gpus(evict)
        if not ok:
            return False
        devices = hold.devices if hold is not None else self._devices_for_next()
        handle = self.backend.create(self, self.env, devices)
        w = _WState(handle, gen=self.gen.id, hold=hold)
        if hold is not None:
            hold.worker = handle.id
            hold.evict = lambda: self._evict(w)
            hold.idle_since = lambda: (
                w.last_active
                if w in self.workers and w.state == WorkerState.WARM and not w.inflight
                else None
            )
        self.workers.append(w)
        self.stats.started_workers += 1
        asyncio.ensure_future(self._boot(w))
        return True

    async def _boot(self, w: _WState) -> None:
        started = time.perf_counter()
        init = {
            "op": "init",
            "endpoint": self.target,
            "module": self.info["module"],
            "gen": self.gen.id,
            "gen_dir": str(self.gen.dir),
            "manifest": self.gen.files,
            "paths": self.gen.paths,
            "skipped": self.gen.skipped,
            "concurrency": self.spec.concurrency,
        }
        try:
            reply = await w.handle.start(init)
        except PoolError as exc:
            self._boot_failed(
                w,
                ErrorInfo(
                    "WorkerCrashed",
                    f"worker failed to start: {exc}",
                    str(exc),
                    kind=ErrorKind.CRASH,
                ),
            )
            return
        except Exception as exc:  # noqa: BLE001
            self._boot_failed(
                w,
                ErrorInfo(
                    type(exc).__name__,
                    f"worker failed to start: {exc}",
                    str(exc),
                    kind=ErrorKind.FATAL,
                ),
            )
            return
        if reply.get("op") == "fatal":
            info = ErrorInfo.from_dict(reply["error"])
            info.kind = ErrorKind.FATAL
            self._boot_failed(w, info)
            return
        w.start_s = time.perf_counter() - started
        if w.state == WorkerState.STARTING:
            w.state = WorkerState.WARM
            w.last_active = time.monotonic()
        how, note = w.handle.started_by, w.handle.note
        self.logs.emit(
            endpoint=self.name,
            stream="system",
            text=f"worker {w.handle.id} ready in {w.start_s * 1000:.0f} ms on {w.handle.device}"
            + (f" ({how})" if how else "")
            + (f"; {note}" if note else ""),
        )
        if w.gen != self.gen.id:
            self._send_load(w)
        self._pump()

    def _boot_failed(self, w: _WState, info: ErrorInfo) -> None:
        self._fatal = info
        self.last_error = f"{info.type}: {info.message}"
        if w in self.workers:
            self.workers.remove(w)
        self._release(w)
        w.handle.kill("start failed")
        # Nothing can run until the code changes: fail what is queued with the reason.
        while self.queue:
            c = self.queue.popleft()
            if not c.future.done():
                c.future.set_result(("error", info))

    def _retire(self, w: _WState) -> None:
        if w.state == WorkerState.RETIRING:
            return
        w.state = WorkerState.RETIRING
        if not w.inflight:
            self._remove(w)
            asyncio.ensure_future(w.handle.stop())

    def _remove(self, w: _WState) -> None:
        """`w` leaves the pool (retired, evicted, exited): its GPUs go back, and whoever waits
        for its load or rebuild gets an answer instead of waiting for a worker that is gone."""
        if w in self.workers:
            self.workers.remove(w)
        self._release(w)
        for f in (w.loading, w.rebuilding):
            _resolve(f, {"op": "exited"})

    # --- worker events ----------------------------------------------------------------
    def _state_of(self, handle: Any) -> _WState | None:
        return next((w for w in self.workers if w.handle is handle), None)

    def _on_worker_message(
        self, handle: Any, header: dict[str, Any], body: bytearray | memoryview
    ) -> None:
        w = self._state_of(handle)
        op = header.get("op")
        if op == "log":
            call = w.inflight.get(header.get("id", -1)) if w else None
            entry = {
                "stream": header.get("stream", "stdout"),
                "text": progress_lines(header.get("text", "")),  # a \r bar: its last state
            }
            if header.get("phase") and call is None and w is not None:
                # import/setup output (worker/main.py labels it): a load's setup runs before the
                # calls sent after it, so the first of those gets it; none yet: the next one
                if w.inflight:
                    call = w.inflight[min(w.inflight)]
                elif len(w.startup_logs) < STARTUP_LOG_LINES:
                    w.startup_logs.append(entry)
            if call is not None:
                add_log(call, entry)
            tag = call.tag if call is not None else ""
            extra = {"phase": header["phase"]} if header.get("phase") else {}
            self.logs.emit(
                endpoint=self.name,
                worker=handle.id,
                call=header.get("id"),
                tag=tag,
                **extra,
                **entry,
            )
            return
        if op in ("dap", "debug_wait"):  # a call under the debugger (server/debug.py)
            hook = DEBUG_HOOKS.get("message")
            if hook is not None:
                hook(self, w, header, body)
            return
        if w is None:
            return
        if op == "loaded":
            _resolve(w.loading, header)
            if header.get("mode") == "restart":
                self.logs.emit(
                    endpoint=self.name,
                    stream="system",
                    text=f"reload needs a new worker: {header.get('reason')}",
                )
                self._retire(w)
                self._pump()
                return
            self.stats.reloads += 1
            self.stats.model_loads += int(header.get("model_loads", 0))
            self.logs.emit(
                endpoint=self.name,
                stream="system",
                text=f"worker {handle.id} reloaded {header.get('gen')} in {header.get('reload_s', 0) * 1000:.1f} ms "
                f"(re-executed: {', '.join(header.get('reexecuted', [])) or 'nothing'})",
            )
            self._note_kept(w, header.get("kept") or {})
            return
        if op == "rebuilt":
            self.stats.model_loads += int(header.get("model_loads", 0))
            released = ", ".join(header.get("released") or []) or "nothing kept"
            failed = header.get("error")
            self.logs.emit(
                endpoint=self.name,
                stream="system",
                text=f"worker {handle.id} rebuilt {released} in {header.get('rebuild_s', 0):.2f} s"
                + (
                    f"; setup failed: {failed.get('type')}: {failed.get('message')}"
                    if failed
                    else ""
                ),
            )
            self._note_kept(w, header.get("kept") or {})
            _resolve(w.rebuilding, header)
            return
        if op == "load_error":
            _resolve(w.loading, header)
            self.logs.emit(
                endpoint=self.name,
                stream="system",
                text=f"reload failed in {handle.id}; replacing it",
            )
            self._retire(w)
            self._pump()
            return
        call = w.inflight.get(header.get("id", -1))
        if call is None:
            return
        if op == "item":
            if call.items is not None:
                call.items.put_nowait(body)
            return
        if op in ("result", "error"):
            if "shm" in header:
                body = shm.attach(header["shm"], unlink=True)
            del w.inflight[call.id]
            w.last_active = time.monotonic()
            call.duration = float(header.get("duration", 0.0))
            call.gen = (
                header.get("gen") or call.gen
            )  # the worker's word (a refused load kept the old)
            self._meter(call, ok=op == "result" or bool(call.cancelled))
            if call.cancelled:
                self.logs.emit(
                    endpoint=self.name,
                    stream="system",
                    tag=call.tag,
                    text=f"cancelled call {call.id} stopped after {call.duration:.2f}s; worker {handle.id} is free",
                )
            if not call.future.done():
                if op == "result":
                    call.future.set_result(("ok", body))
                else:
                    info = ErrorInfo.from_dict(header["error"])
                    info.pickled = bytes(body) if body else None
                    call.future.set_result(("error", info))
            if w.state == WorkerState.RETIRING and not w.inflight:
                self._remove(w)
                asyncio.ensure_future(w.handle.stop())
            elif w.state == WorkerState.BUSY and not w.inflight:
                w.state = WorkerState.WARM
            self._pump()

    def _note_kept(self, w: _WState, kept: dict[str, Any]) -> None:
        """A worker's report on its kept objects after a reload: said in the endpoint's log
        (the stale ones with what to do), kept for /v1/endpoints and `slipstream status`."""
        before = {(s["key"], s["cls"]) for s in w.kept.get("stale", [])}
        w.kept = kept
        if kept.get("updated"):
            self.logs.emit(
                endpoint=self.name,
                stream="system",
                text=f"worker {w.handle.id}: {kept['updated']} kept object(s) now run the saved "
                f"code of {', '.join(kept.get('classes', []))} (weights kept)",
            )
        for s in kept.get("stale", []):
            if (s["key"], s["cls"]) in before:
                continue  # said once per worker, when it went stale
            self.logs.emit(
                endpoint=self.name,
                stream="system",
                text=f"⚠ {stale_text(s)}. {REBUILD_HINT.format(name=self.name)}",
            )

    def stale(self) -> list[dict[str, str]]:
        """The kept objects that run old code, over this pool's workers (one entry per key,
        object and class)."""
        out: dict[tuple[str, str, str], dict[str, str]] = {}
        for w in self.workers:
            for s in w.kept.get("stale", []):
                out.setdefault((s["key"], s["path"], s["cls"]), s)
        return list(out.values())

    async def reload_report(self, timeout: float) -> dict[str, Any] | None:
        """After a deploy: wait (at most `timeout` s) for the workers loading the current
        generation, then what they say of their kept objects: {updated, classes, stale,
        loading (workers still loading: they report in the log)}; None when there is nothing
        to say."""
        waiting = [
            w.loading for w in self.workers if w.loading is not None and w.gen == self.gen.id
        ]
        done: set[asyncio.Future[dict[str, Any]]] = set()
        if waiting:
            done, _ = await asyncio.wait(waiting, timeout=timeout)
        kept = [f.result().get("kept") or {} for f in done]
        updated = sum(k.get("updated", 0) for k in kept)
        stale = self.stale()
        loading = sum(1 for f in waiting if f not in done)
        if not (updated or stale or loading):
            return None
        return {
            "updated": updated,
            "classes": sorted({c for k in kept for c in k.get("classes", [])}),
            "stale": stale,
            "loading": loading,
        }

    async def rebuild(self, keys: list[str] | None, stale_only: bool) -> list[dict[str, Any]]:
        """Load the kept objects of each running worker again and re-run setup(); the workers'
        replies. Calls queue meanwhile (each worker finishes its running calls first)."""
        waits = []
        for w in self.workers:
            if w.state in (WorkerState.STARTING, WorkerState.RETIRING):
                continue
            if w.rebuilding is None or w.rebuilding.done():
                w.rebuilding = asyncio.get_running_loop().create_future()
                msg: dict[str, Any] = {"op": "rebuild", "stale": stale_only}
                if keys is not None:
                    msg["keys"] = keys
                w.handle.send(msg)
            waits.append(w.rebuilding)
        return [
            r for r in await asyncio.gather(*waits, return_exceptions=True) if isinstance(r, dict)
        ]

    def _meter(self, call: Call, ok: bool) -> None:
        self.stats.calls += 1
        if not ok:
            self.stats.errors += 1
        self.stats.busy_s += call.duration
        self.stats.cost_usd += price_cost(self.spec.gpu_label, call.duration)
        self.stats.latencies.append(time.perf_counter() - call.queued_at)

    def call_cost(self, call: Call) -> float:
        return price_cost(self.spec.gpu_label, call.duration)

    def _on_worker_exit(self, handle: Any, reason: str) -> None:
        hook = DEBUG_HOOKS.get("exit")
        if hook is not None:
            hook(self, handle)  # its debug session, if any, ends (server/debug.py)
        w = self._state_of(handle)
        if w is None:
            return
        self._remove(w)
        if w.inflight:
            self.stats.crashes += 1
            self.last_error = reason
            self.logs.emit(
                endpoint=self.name, stream="system", text=f"worker {handle.id}: {reason}"
            )
        for call in w.inflight.values():
            if not call.future.done():
                call.future.set_exception(
                    PoolError(ErrorKind.CRASH, f"endpoint {self.name!r}: {reason}; it was replaced")
                )
        w.inflight.clear()
        self._pump()

    def _on_timeout(self, call: Call) -> None:
        w = self._state_of(call.worker) if call.worker else None
        self.stats.timeouts += 1
        msg = f"endpoint {self.name!r}: the call ran past its timeout of {self.spec.timeout:g}s; its worker was killed and replaced"
        if w is not None:
            w.inflight.pop(call.id, None)
            self._kill_worker(
                w,
                f"killed because a call on the same worker ran past its {self.spec.timeout:g}s timeout",
                "its worker was killed because another call timed out",
            )
        raise PoolError(ErrorKind.TIMEOUT, msg)

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(self.spec.idle_timeout / 4, 0.05)))
            now = time.monotonic()
            live = [w for w in self.workers if w.state != WorkerState.RETIRING]
            keep, ended = self._hold()
            surplus = len(live) - keep
            for w in sorted(live, key=lambda w: w.last_active):
                if surplus <= 0:
                    break
                if (
                    w.state == WorkerState.WARM
                    and not w.inflight
                    and now - max(w.last_active, ended) >= self.spec.idle_timeout
                ):
                    self.logs.emit(
                        endpoint=self.name,
                        stream="system",
                        text=f"worker {w.handle.id} idle; scaling down",
                    )
                    self._remove(w)
                    asyncio.ensure_future(w.handle.stop())
                    surplus -= 1
