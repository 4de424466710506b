"""A worker process: runs one endpoint's calls (or, as the scanner, imports new code to check it).

Started by the runtime's pool with one end of a socketpair (--fd), or by a Ray actor that dials
the runtime back over TCP (--connect, see ray_backend.py). It never sees HTTP; the server
forwards request bodies untouched and this process decodes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib
import inspect
import io
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import keeper as keep_mod
from ..endpoint import IN_RUNTIME_ENV, Endpoint, bad_arguments
from ..protocol import envvars, secrets, shm, wire
from ..protocol.errors import CallCancelled, ErrorInfo, error_info
from ..protocol.ipc import Channel
from ..protocol.jsontypes import ArgumentError, convert_arguments, param_schemas
from ..protocol.kinds import ErrorKind
from ..protocol.messages import EndpointInfo, ParamInfo
from .debug import ATTACH_TIMEOUT_S, Debugger
from .follow import FollowReport, follow, reimport
from .reload import CodeLoader, module_for, shadowed_stdlib
from .skipped import note as skip_note

_call = threading.local()
# what the worker is doing outside a call: "Painter import", "Painter setup" ("" otherwise); the
# output of that (print, logging) has no call, so its lines are labelled with it
_phase = ""


@contextlib.contextmanager
def _labelled(label: str) -> Iterator[None]:
    global _phase
    before, _phase = _phase, label
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):  # a last line without its newline
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        _phase = before


# Sent by the channel thread to the main thread to interrupt a call the runtime cancelled.
CANCEL_SIGNAL = signal.SIGUSR1
PARENT_WATCH_S = 0.5


class _Running:
    """One call in progress: the thread it runs on, and whether it is inside the endpoint's
    code right now (only then may a cancel interrupt it; never while it sends a message)."""

    __slots__ = ("cid", "thread", "main", "interruptible", "cancelled", "lock")

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.thread = threading.get_ident()
        self.main = threading.current_thread() is threading.main_thread()
        self.interruptible = False
        self.cancelled = False
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            if self.cancelled:
                raise CallCancelled("the caller went away")
            self.interruptible = True

    def leave(self) -> None:
        with self.lock:
            self.interruptible = False
            if self.cancelled and not self.main:
                _async_raise(self.thread, None)  # an interrupt that has not landed yet is dropped

    def interrupt(self) -> None:
        """From the channel thread: stop this call (at once if it is in the endpoint's code,
        else when it next enters it)."""
        with self.lock:
            if self.cancelled:
                return
            self.cancelled = True
            if not self.interruptible:
                return
            if self.main:
                signal.pthread_kill(
                    self.thread, CANCEL_SIGNAL
                )  # also breaks a sleep or a blocking read
            else:
                _async_raise(self.thread, CallCancelled)


def _async_raise(thread: int, exc: Any) -> None:
    """Raise exc in another thread at its next bytecode (None: withdraw a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(exc) if exc is not None else None
    )


LOG_CHUNK = 64 * 1024  # bytes of output sent as one message at most...
LOG_DELAY = 0.05  # ...and seconds the first line of one waits for more


class _LogBatcher:
    """Coalesces user output into chunks: a line printed joins the lines before it of the same
    call, stream and phase, and they go to the runtime as one message when LOG_CHUNK bytes have
    gathered, LOG_DELAY after the first (a flusher thread), on flush(), or before any other
    message the worker sends (a result never overtakes the output printed before it). One
    message per line made a million-line training log 60x slower than a local pipe."""

    def __init__(self, send: Callable[..., None]) -> None:
        self._raw = send
        self._lock = threading.Lock()
        # per thread: (call id, stream, phase) -> [texts, size, first written at]
        self._pending: dict[int, tuple[tuple[Any, str, str], list[str], int, float]] = {}
        self._wake = threading.Event()
        _small_thread(self._flusher, (), "log-flush")

    def add(self, key: tuple[Any, str, str], text: str, now: bool = False) -> None:
        me = threading.get_ident()
        with self._lock:
            cur = self._pending.get(me)
            if cur is not None and cur[0] != key:
                self._send_locked(me)
                cur = None
            if cur is None:
                cur = (key, [], 0, time.monotonic())
            texts, size = cur[1], cur[2] + len(text)
            texts.append(text)
            self._pending[me] = (key, texts, size, cur[3])
            if now or size >= LOG_CHUNK:
                self._send_locked(me)
            else:
                self._wake.set()

    def flush(self) -> None:
        with self._lock:
            for tid in list(self._pending):
                self._send_locked(tid)

    def send(self, header: dict[str, Any], *rest: Any, **kw: Any) -> None:
        """The channel's send: what the worker says after its output comes after it."""
        if self._pending:
            self.flush()
        self._raw(header, *rest, **kw)

    def _send_locked(self, tid: int) -> None:
        got = self._pending.pop(tid, None)
        if got is None:
            return
        (cid, stream, phase), texts, _, _ = got
        header: dict[str, Any] = {"op": "log", "id": cid, "stream": stream}
        if phase:
            header["phase"] = phase
        header["text"] = secrets.mask("".join(texts))
        try:
            self._raw(header)
        except OSError:
            pass

    def _flusher(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(LOG_DELAY)
            with self._lock:
                self._wake.clear()
                due = time.monotonic() - LOG_DELAY
                for tid, (_, _, _, first) in list(self._pending.items()):
                    if first <= due:
                        self._send_locked(tid)
                if self._pending:
                    self._wake.set()


class _LogStream(io.TextIOBase):
    """stdout/stderr of user code, sent to the runtime in chunks of lines (_LogBatcher),
    tagged with the call."""

    def __init__(self, batcher: _LogBatcher, stream: str) -> None:
        self.batcher, self.stream = batcher, stream
        self._buf = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        pending = getattr(self._buf, "text", "") + s
        cut = pending.rfind("\n") + 1
        self._buf.text = pending[cut:]
        if cut:
            self._send(pending[:cut])
        return len(s)

    def flush(self) -> None:
        pending = getattr(self._buf, "text", "")
        self._buf.text = ""
        self._send(pending, now=True)

    def _send(self, text: str, now: bool = False) -> None:
        cid = getattr(_call, "id", None)
        phase = _phase if cid is None else ""
        if phase:  # setup() or the module's import: said once, labelled
            *lines, rest = text.split("\n")  # not splitlines(): a \r progress bar is one line
            text = "".join(f"[{phase}] {line}\n" for line in lines) + (
                f"[{phase}] {rest}" if rest else ""
            )
        if text:
            self.batcher.add((cid, self.stream, phase), text, now)
        elif now:
            self.batcher.flush()


class Worker:
    def __init__(self, ch: Channel) -> None:
        self.ch = ch
        self.loader = CodeLoader()
        self.name = ""
        self.module = ""
        self.endpoint: Endpoint | None = None
        self.instance: Any = None
        self.setup_error: ErrorInfo | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.concurrency = 1
        self.inflight = 0
        self.idle = threading.Condition()
        self.running: dict[int, _Running] = {}
        self.cancelled_early: set[int] = set()  # cancelled before they started here
        self._cancel_lock = threading.Lock()
        self.main_call: _Running | None = None
        self.debugger = Debugger(ch.send)  # calls under the debugger (debug.py)
        self.kept = FollowReport()  # what keep() holds vs the code: after the last reload
        self._script: tuple[tuple[str | None, str], str | None] = ((None, ""), None)
        self.skipped: dict[str, str] = {}  # what the sync left out -> why (skipped.py)

    # --- code -------------------------------------------------------------------------
    def _err(self, exc: BaseException) -> ErrorInfo:
        noted = skip_note(exc, self.skipped, self.loader.relative, self.loader.paths)
        info = error_info(noted or exc, self.loader.relative)
        if isinstance(exc, SyntaxError) and exc.filename:
            rel = self.loader.relative(exc.filename)
            if rel:
                from ..protocol.errors import Frame

                info.frames.append(
                    Frame(rel, exc.lineno or 0, "<module>", (exc.text or "").strip(), True)
                )
        return info

    def init(self, h: dict[str, Any]) -> None:
        self.name, self.module = h["endpoint"], h["module"]
        self.concurrency = max(1, int(h.get("concurrency", 1)))
        self.pool = ThreadPoolExecutor(self.concurrency, "call")
        started = time.perf_counter()
        self.skipped = h.get("skipped") or {}
        try:
            with _labelled(f"{self.name} import"):
                self.loader.switch(h["gen"], _gen_dir(h), h["manifest"], h.get("paths"))
            self._bind(run_setup=True)
        except BaseException as exc:  # noqa: BLE001 - reported to the runtime, which decides
            self.ch.send({"op": "fatal", "error": self._err(exc).to_dict()})
            return
        self.ch.send(
            {
                "op": "ready",
                "gen": h["gen"],
                "pid": os.getpid(),
                "start_s": time.perf_counter() - started,
                "device": _device(),
            }
        )

    def _bind(self, run_setup: bool, reexecuted: list[str] | None = None) -> None:
        self._as_script(self.module)
        with _labelled(f"{self.name} import"):
            mod = importlib.import_module(self.module)
        ep = _find(mod, self.name)
        if ep is None:
            raise LookupError(f"endpoint {self.name!r} is no longer defined in {self.module}")
        self.endpoint = ep
        if reexecuted:  # before setup() runs again: what keep() hands it runs the new code
            self.follow_kept(reexecuted)
        if ep.is_class and (run_setup or self.instance is None):
            with _labelled(f"{self.name} setup"):
                inst = ep.target()
            self.setup_error = None
            if callable(getattr(inst, "setup", None)):
                keep_mod.begin_setup(self.name)
                ok = False
                try:
                    with _labelled(f"{self.name} setup"):
                        inst.setup()
                    ok = True
                except BaseException as exc:  # noqa: BLE001
                    self.setup_error = self._err(exc)
                finally:
                    keep_mod.end_setup(self.name, ok)
            self.instance = inst

    def load(self, h: dict[str, Any]) -> None:
        self._drain()
        old = (self.loader.generation, self.loader.gen_dir, self.loader.manifest)
        started = time.perf_counter()
        loads_before = keep_mod.stats().loads
        self.skipped = h.get("skipped") or {}
        try:
            gen_dir = _gen_dir(h)
        except Exception as exc:  # noqa: BLE001 - the runtime replaces this worker
            self.ch.send({"op": "load_error", "gen": h["gen"], "error": self._err(exc).to_dict()})
            return
        with _labelled(f"{self.name} import"):  # changed modules run again
            report, purged = self.loader.switch(h["gen"], gen_dir, h["manifest"], h.get("paths"))
        if report.mode == "restart":
            self.ch.send(
                {"op": "loaded", "gen": h["gen"], "mode": "restart", "reason": report.reason}
            )
            return
        try:
            self._bind(self.module in report.reexecuted, report.reexecuted)
        except BaseException as exc:  # noqa: BLE001
            self.loader.rollback(old[0] or "", old[1] or "", old[2], purged)
            self._bind(run_setup=False)
            self.ch.send({"op": "load_error", "gen": h["gen"], "error": self._err(exc).to_dict()})
            return
        self.ch.send(
            {
                "op": "loaded",
                "gen": h["gen"],
                "mode": report.mode,
                "changed": report.changed,
                "reexecuted": report.reexecuted,
                "reload_s": time.perf_counter() - started,
                "model_loads": keep_mod.stats().loads - loads_before,
                "kept": self.kept.to_dict(),
            }
        )

    def _as_script(self, module: str) -> None:
        """sys.argv as `python <the module's file>` would give it (argparse, configurators),
        not the worker's own command line."""
        key = (self.loader.generation, module)
        if self._script[0] != key:
            manifest, paths = self.loader.manifest, self.loader.paths
            rel = next((r for r in manifest if module_for(r, manifest, paths) == module), None)
            self._script = (key, rel)
        rel = self._script[1]
        if rel and self.loader.link:
            sys.argv = [os.path.join(self.loader.link, rel)]

    def follow_kept(self, reexecuted: list[str]) -> None:
        """Move what keep() holds onto the classes just re-executed (worker/follow.py)."""
        modules: dict[str, Any] = dict(self.loader.user_modules())
        modules.update(reimport(n for n in reexecuted if n not in modules))
        self.kept = follow(keep_mod.kept(), modules)

    def rebuild(self, h: dict[str, Any]) -> None:
        """Load kept objects again (all, the stale ones, or the keys asked for), then run the
        endpoint's setup() again: `slipstream rebuild`, the editor's "Rebuild kept model"."""
        self._drain()
        started = time.perf_counter()
        loads_before = keep_mod.stats().loads
        keys = None  # all it keeps
        if h.get("stale"):
            stale = {s.key for s in self.kept.stale}  # repr()s of keep() keys
            keys = [k for k in keep_mod.kept() if repr(k) in stale]
        elif h.get("keys") is not None:
            wanted = {str(k) for k in h["keys"]}  # as typed: 'gpt' or gpt
            keys = [k for k in keep_mod.kept() if repr(k) in wanted or str(k) in wanted]
        released = keep_mod.release(keys)
        error = None
        try:
            self._bind(run_setup=True)
        except BaseException as exc:  # noqa: BLE001 - reported; the worker keeps serving
            error = self._err(exc).to_dict()
        if self.setup_error is not None:
            error = self.setup_error.to_dict()
        self.kept = follow(keep_mod.kept(), dict(self.loader.user_modules()))
        self.ch.send(
            {
                "op": "rebuilt",
                "released": [repr(k) for k in released],
                "model_loads": keep_mod.stats().loads - loads_before,
                "rebuild_s": time.perf_counter() - started,
                "kept": self.kept.to_dict(),
                **({"error": error} if error else {}),
            }
        )

    def scan(self, h: dict[str, Any]) -> None:
        """Import the project's endpoint modules from a new generation and describe them."""
        old = (self.loader.generation, self.loader.gen_dir, self.loader.manifest)
        started = time.perf_counter()
        for p in h.get("extra_paths", []):
            if p not in sys.path:
                sys.path.append(
                    p
                )  # dependencies installed for endpoints, visible to the import check
        self.skipped = h.get("skipped") or {}
        shadows = shadowed_stdlib(h["manifest"], h.get("paths") or [""])
        if shadows:
            self.ch.send({"op": "scan_error", "error": _shadow_error(shadows).to_dict()})
            return
        report, purged = self.loader.switch(h["gen"], h["gen_dir"], h["manifest"], h.get("paths"))
        if report.mode == "restart":
            self.ch.send({"op": "scanned", "restart": report.reason, "endpoints": []})
            return
        found: list[EndpointInfo] = []
        try:
            for rel in h.get("entries", []):
                mod_name = module_for(rel, h["manifest"], self.loader.paths)
                if not mod_name:
                    continue
                self._as_script(mod_name)
                mod = importlib.import_module(mod_name)
                for ep in _endpoints_in(mod):
                    found.append(_describe(ep, mod_name, rel))
            names = [e["name"] for e in found]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                where = [f"{e['file']}:{e['line']}" for e in found if e["name"] in dup]
                raise NameError(
                    f"two endpoints are named {sorted(dup)[0]!r} ({', '.join(where)}); "
                    "give one of them name=..."
                )
        except BaseException as exc:  # noqa: BLE001
            if old[1]:
                self.loader.rollback(old[0] or "", old[1], old[2], purged)
            self.ch.send({"op": "scan_error", "error": self._err(exc).to_dict()})
            return
        self.ch.send(
            {
                "op": "scanned",
                "endpoints": found,
                "changed": report.changed,
                "reexecuted": report.reexecuted,
                "scan_s": time.perf_counter() - started,
            }
        )

    # --- calls --------------------------------------------------------------------------
    def submit(self, h: dict[str, Any], body: bytearray) -> None:
        with self.idle:
            self.inflight += 1
        assert self.pool is not None
        if self.concurrency == 1 or h.get("debug"):
            self._run(h, body)  # one call at a time: no thread hand-off on the hot path
        else:
            self.pool.submit(self._run, h, body)

    def wait_for_debugger(self, cid: int, where: str = "") -> None:
        """Tell the runtime this call waits for a debugger, and wait until one has attached
        and set its breakpoints."""
        self.debugger.ensure()
        root = self.loader.link or self.loader.gen_dir or ""
        self.ch.send(
            {"op": "debug_wait", "id": cid, "root": root, "where": where, "pid": os.getpid()}
        )
        if not self.debugger.wait_for_client():
            raise TimeoutError(
                f"no debugger attached within {ATTACH_TIMEOUT_S:g}s (SLIPSTREAM_DEBUG_ATTACH_TIMEOUT)"
            )

    def on_breakpoint(self, *args: Any, **kwargs: Any) -> None:
        """breakpoint() in endpoint code under `slipstream run --debug`: wait for a debugger,
        then stop at the line after it. Outside a call (at import) it does nothing."""
        cid = getattr(_call, "id", None)
        if cid is None:
            return
        frame = sys._getframe(1)
        if not self.debugger.attached():
            rel = self.loader.relative(frame.f_code.co_filename) or frame.f_code.co_filename
            self.wait_for_debugger(cid, f"{rel}:{frame.f_lineno}")
        self.debugger.stop_here(frame)

    def _drain(self) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.inflight == 0)

    # --- cancellation -------------------------------------------------------------------
    def cancel(self, cid: Any) -> None:
        """The runtime's caller went away (called on the channel thread)."""
        with self._cancel_lock:
            st = self.running.get(cid)
            if st is None:
                if len(self.cancelled_early) > 10_000:
                    self.cancelled_early.clear()
                self.cancelled_early.add(cid)
                return
        st.interrupt()

    def on_cancel_signal(self, signum: int, frame: Any) -> None:
        st = self.main_call
        if st is not None and st.cancelled and st.interruptible:
            st.interruptible = False  # once
            raise CallCancelled("the caller went away")

    def _begin(self, cid: int) -> _Running | None:
        with self._cancel_lock:
            if cid in self.cancelled_early:
                self.cancelled_early.discard(cid)
                return None
            st = self.running[cid] = _Running(cid)
        if st.main:
            self.main_call = st
        return st

    def _end(self, st: _Running | None) -> None:
        if st is None:
            return
        with self._cancel_lock:
            self.running.pop(st.cid, None)
        if self.main_call is st:
            self.main_call = None

    def _items(self, gen: Any, st: _Running) -> Any:
        """The generator's items, each step of it interruptible; closed however it ends."""
        loop = asyncio.new_event_loop() if inspect.isasyncgen(gen) else None
        try:
            while True:
                st.enter()
                try:
                    if loop is not None:
                        item = loop.run_until_complete(gen.__anext__())
                    else:
                        item = next(gen)
                except (StopIteration, StopAsyncIteration):
                    return
                finally:
                    st.leave()
                yield item
        finally:
            try:
                if loop is not None:
                    loop.run_until_complete(gen.aclose())
                else:
                    gen.close()
            except Exception:  # noqa: BLE001 - the call's own outcome is what goes back
                pass
            if loop is not None:
                loop.close()

    def _run(self, h: dict[str, Any], body: bytearray) -> None:
        cid = h["id"]
        _call.id = cid
        started = time.perf_counter()
        # the code this call runs: a new generation loads only once every call has finished
        # (load drains first), so the one at the start is the one all through
        gen = self.loader.generation or ""
        fmt = h.get("format", "pickle")
        st = self._begin(cid)
        try:
            if st is None:
                raise CallCancelled("the caller went away before the call started")
            try:
                fn, args, kwargs = self._prepare(h, body)
            except _BadRequest as exc:
                self._send_error(cid, started, exc.info, gen)
                return
            if self.setup_error is not None:
                self._send_error(cid, started, self.setup_error, gen)
                return
            if h.get("debug"):
                self.wait_for_debugger(cid)
            st.enter()
            try:
                result = fn(*args, **kwargs)
                if inspect.iscoroutine(result):
                    result = asyncio.run(result)
            finally:
                st.leave()
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                if h.get("stream"):  # each item goes out as it is produced
                    for item in self._items(result, st):
                        self.ch.send(
                            {"op": "item", "id": cid}, self._encode(item, fmt, h.get("method"))
                        )
                    result = None
                else:  # a plain call (await f.aio(), .map, JSON without streaming): the list
                    result = list(self._items(result, st))
            sys.stdout.flush()
            sys.stderr.flush()
            header = {
                "op": "result",
                "id": cid,
                "duration": time.perf_counter() - started,
                "gen": gen,
            }
            chunks = self._encode(result, fmt, h.get("method"))
            size = wire.frame_length(chunks)
            if h.get("shm_reply") and size >= shm.THRESHOLD:
                buf = shm.SharedBuffer(size, "r-")
                buf.write(chunks)
                header["shm"] = buf.ref()
                buf.release()
                chunks = []
            self.ch.send(header, chunks)
        except CallCancelled as exc:
            sys.stdout.flush()
            sys.stderr.flush()
            self._send_error(
                cid,
                started,
                ErrorInfo("CallCancelled", str(exc), "", kind=ErrorKind.CANCELLED),
                gen,
            )
        except BaseException as exc:  # noqa: BLE001 - user code: every failure goes back
            self.debugger.post_mortem(exc)  # under a debugger: stops at the raising line first
            sys.stdout.flush()
            sys.stderr.flush()
            self._send_error(cid, started, self._err(exc), gen)
        finally:
            self._end(st)
            _call.id = None
            with self.idle:
                self.inflight -= 1
                self.idle.notify_all()

    def _prepare(self, h: dict[str, Any], body: bytearray) -> tuple[Any, list[Any], dict[str, Any]]:
        ep = self.endpoint
        assert ep is not None
        method = h.get("method")
        if ep.is_class:
            if not method or method.startswith("_") or method == "setup":
                choices = ", ".join(ep.methods())
                raise _BadRequest(f"call a method of class endpoint {ep.name!r}: one of {choices}")
            fn = getattr(self.instance, method, None)
            if not callable(fn):
                raise _BadRequest(
                    f"endpoint {ep.name!r} has no method {method!r} (has: {', '.join(ep.methods())})"
                )
        else:
            if method:
                raise _BadRequest(
                    f"endpoint {ep.name!r} is a function; it has no method {method!r}"
                )
            fn = ep.target
        if "shm" in h:
            body = shm.attach(h["shm"])  # type: ignore[assignment]
        try:
            if h.get("format", "pickle") == "pickle":
                payload = wire.loads(body)
            else:
                payload = json.loads(bytes(body) or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("the body must be an object with 'args' and/or 'kwargs'")
            args, kwargs = list(payload.get("args") or []), dict(payload.get("kwargs") or {})
        except Exception as exc:  # noqa: BLE001
            raise _BadRequest(f"could not decode the arguments: {exc}") from None
        kwargs = secrets.take(kwargs)  # secrets=[...]: into the environment, masked in output
        label = f"{ep.name}{'.' + method if method else ''}"
        problem = bad_arguments(label, fn, args, kwargs)
        if problem:
            raise _BadRequest(problem)
        if h.get("format", "pickle") != "pickle":
            try:
                args, kwargs = convert_arguments(fn, args, kwargs)
            except ArgumentError as exc:
                raise _BadRequest(f"{label}: {exc}") from None
        return fn, args, kwargs

    def _encode(self, value: Any, fmt: str, method: str | None = None) -> list[bytes | memoryview]:
        try:
            if fmt == "pickle":
                return wire.dumps(value)
            return [wire.json_dumps(wire.to_display(value))]
        except Exception as exc:  # noqa: BLE001 - say what could not go back, not where pickle failed
            name = (self.endpoint.name if self.endpoint is not None else "the endpoint") + (
                f".{method}" if method else ""
            )
            cls = type(value)
            what = (
                cls.__qualname__
                if cls.__module__ == "builtins"
                else f"{cls.__module__}.{cls.__qualname__}"
            )
            raise TypeError(
                f"{name} returned a {what} that cannot be sent back "
                f"({type(exc).__name__}: {exc}); return plain data (numbers, strings, lists, dicts, arrays, "
                "tensors, images), or keep the object on the runtime (keep()) and return what the caller needs"
            ) from None

    def _send_error(self, cid: int, started: float, info: ErrorInfo, gen: str = "") -> None:
        d = info.to_dict()
        d["message"], d["traceback"] = secrets.mask(d["message"]), secrets.mask(d["traceback"])
        for f in d.get("frames") or []:
            if isinstance(f, dict) and isinstance(f.get("code"), str):
                f["code"] = secrets.mask(f["code"])
        pickled = (
            info.pickled if info.pickled and not secrets.mask_bytes_present(info.pickled) else None
        )
        body: list[bytes | memoryview] = [pickled] if pickled else []
        self.ch.send(
            {
                "op": "error",
                "id": cid,
                "duration": time.perf_counter() - started,
                "error": d,
                "gen": gen,
            },
            body,
        )


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.info = ErrorInfo("TypeError", message, message, kind=ErrorKind.BAD_REQUEST)


def _shadow_error(shadows: list[tuple[str, str]]) -> ErrorInfo:
    """A deploy refusal for project modules named like standard-library ones."""
    from ..protocol.errors import Frame

    rel, name = shadows[0]
    stem = rel.rsplit("/", 1)[0] if rel.endswith("/__init__.py") else rel[:-3]
    others = "".join(f"; also {r} ('{n}')" for r, n in shadows[1:])
    message = (
        f"{rel} has the name of the standard-library module '{name}': which one `import {name}` "
        f"gives depends on what was imported first (in your process and on the runtime), and the "
        f"runtime itself imports '{name}'. Rename it (e.g. {stem}_{'pkg' if stem != rel[:-3] else 'utils'}"
        f"{'' if rel.endswith('/__init__.py') else '.py'}) and update its imports{others}"
    )
    frames = [Frame(r, 1, "<module>", "", True) for r, _ in shadows]
    return ErrorInfo("ShadowedModule", message, message, frames, kind=ErrorKind.DEPLOY)


def _is_generator(fn: Any) -> bool:
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def _endpoints_in(mod: Any) -> list[Endpoint]:
    return [
        v for v in vars(mod).values() if isinstance(v, Endpoint) and v.__module__ == mod.__name__
    ]


def _find(mod: Any, name: str) -> Endpoint | None:
    return next((e for e in _endpoints_in(mod) if e.name == name), None)


def _describe(ep: Endpoint, mod_name: str, rel: str) -> EndpointInfo:
    """The endpoint as the runtime and the SDK see it (the "scanned" reply; see EndpointInfo)."""
    try:
        line = inspect.getsourcelines(ep.target)[1]
    except (OSError, TypeError):
        line = 0
    fn = ep.target
    methods = ep.methods()
    defs: dict[str, Any] = {}
    return {
        "name": ep.name,
        "module": mod_name,
        "qualname": ep.__qualname__,
        "file": rel,
        "line": line,
        "kind": "class" if ep.is_class else "function",
        "methods": methods,
        "generator": bool(not ep.is_class and _is_generator(fn)),
        # what streams its results: "" for a function, else the generator methods of a class
        "streams": [m for m in methods if _is_generator(getattr(fn, m))]
        if ep.is_class
        else ([""] if _is_generator(fn) else []),
        "signature": _signatures(ep, defs),
        "schemas": defs,  # shared type definitions the signature's schemas refer to
        "doc": inspect.getdoc(fn) or "",
        "spec": ep.spec.to_dict(),
        "warnings": [p.describe() for p in ep.warnings],
        "models": _model_ids(ep),
    }


def _model_ids(ep: Endpoint) -> list[str]:
    """The model ids ("org/name") its code names: string constants of its functions (a class's
    methods too) and the module globals they read; the runtime sizes its GPU memory from them
    (server/allocator.py), as the editor does from the source."""
    from ..spec.modelsize import looks_like_model_id

    fn = ep.target
    funcs = [v for v in vars(fn).values() if inspect.isfunction(v)] if ep.is_class else [fn]
    found: list[str] = []

    def walk(code: Any, globs: dict[str, Any]) -> None:
        for c in code.co_consts:
            if isinstance(c, str) and looks_like_model_id(c) and c not in found:
                found.append(c)
            elif inspect.iscode(c):
                walk(c, globs)
        for name in code.co_names:
            v = globs.get(name)
            if isinstance(v, str) and looks_like_model_id(v) and v not in found:
                found.append(v)

    for f in funcs:
        f = inspect.unwrap(f)
        if hasattr(f, "__code__"):
            walk(f.__code__, getattr(f, "__globals__", {}))
    return found


def _signatures(ep: Endpoint, defs: dict[str, Any]) -> dict[str, list[ParamInfo]]:
    targets = {m: getattr(ep.target, m) for m in ep.methods()} if ep.is_class else {"": ep.target}
    out = {}
    for m, fn in targets.items():
        params: list[ParamInfo] = []
        sig = inspect.signature(fn)
        schemas = param_schemas(fn, defs)
        for p in list(sig.parameters.values())[(1 if ep.is_class else 0) :]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            default = p.default if p.default is not p.empty else None
            try:
                json.dumps(default)
            except TypeError:
                default = repr(default)
            params.append(
                {
                    "name": p.name,
                    "required": p.default is p.empty,
                    "default": default,
                    "annotation": _annotation(p.annotation),
                    **({"schema": schemas[p.name]} if p.name in schemas else {}),
                }
            )
        out[m] = params
    return out


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return ""
    return a if isinstance(a, str) else getattr(a, "__name__", repr(a))


def _gen_dir(h: dict[str, Any]) -> str:
    """The generation's directory: the runtime's own, or a local copy fetched from it."""
    if h.get("fetch_url"):  # this worker does not share the runtime's disk (a Ray actor)
        from .fetch import materialise

        return materialise(h["gen"], h["manifest"], h["fetch_url"], h.get("fetch_token", ""))
    return h["gen_dir"]


def _connect(where: str) -> socket.socket:
    """A TCP connection back to the runtime (for workers it did not start itself: Ray actors)."""
    host, _, port = where.rpartition(":")
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _device() -> str:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    return "cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, "", "-1") else "cpu"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m slipstream.worker.main")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--fd", type=int, help="one end of a socketpair the runtime passed down")
    how.add_argument(
        "--connect", metavar="HOST:PORT", help="dial the runtime's worker port over TCP"
    )
    ap.add_argument(
        "--worker-id", default="", help="with --connect: the id the runtime gave this worker"
    )
    args = ap.parse_args(argv)
    if args.connect:
        # the per-worker secret comes by environment (argv is visible to `ps`), and user code never sees it
        secret = os.environ.pop(envvars.WORKER_SECRET, "")
        serve(_connect(args.connect), {"worker": args.worker_id, "secret": secret})
    else:
        serve(socket.socket(fileno=args.fd))


def serve(sock: socket.socket, hello: dict[str, Any] | None = None) -> None:
    """Run the worker loop on a connected channel until told to exit (then exit the process)."""
    ch = Channel(sock)
    batcher = _LogBatcher(ch.send)
    ch.send = batcher.send  # type: ignore[method-assign]
    sys.stdout = _LogStream(batcher, "stdout")  # type: ignore[assignment]
    sys.stderr = _LogStream(batcher, "stderr")  # type: ignore[assignment]
    w = Worker(ch)
    die_with_parent()
    if threading.current_thread() is threading.main_thread():
        signal.signal(CANCEL_SIGNAL, w.on_cancel_signal)
    if os.environ.get(envvars.DEBUG_BREAKPOINTS) == "1":  # slipstream run --debug
        sys.breakpointhook = w.on_breakpoint
    ch.send({"op": "hello", "pid": os.getpid(), **(hello or {})})
    # The channel is read on its own thread, so that a cancel or an exit reaches a worker busy
    # in a call, and a runtime that goes away ends the worker at once; calls, loads and scans
    # run here on the main thread, in the order they came.
    inbox: queue.SimpleQueue[tuple[dict[str, Any], bytearray]] = queue.SimpleQueue()
    _small_thread(_read_channel, (ch, w, inbox), "channel")
    handlers = {"init": w.init, "load": w.load, "scan": w.scan, "rebuild": w.rebuild}
    while True:
        header, body = inbox.get()
        op = header.get("op")
        if op == "call":
            try:
                w.submit(header, body)
            except CallCancelled:
                pass  # a cancel that landed after its call had answered
        elif op in handlers:
            try:
                handlers[op](header)
            except BaseException:  # noqa: BLE001 - never die silently
                ch.send(
                    {
                        "op": "fatal",
                        "error": {
                            "type": "InternalError",
                            "message": traceback.format_exc(),
                            "traceback": "",
                        },
                    }
                )


def _read_channel(
    ch: Channel, w: Worker, inbox: queue.SimpleQueue[tuple[dict[str, Any], bytearray]]
) -> None:
    while True:
        try:
            header, body = ch.recv()
        except BaseException:  # noqa: BLE001 - the runtime is gone (or garbled the channel)
            w.loader.close()
            os._exit(0)
        op = header.get("op")
        if op == "cancel":
            w.cancel(header.get("id"))
        elif op == "dap":  # a debug session's message for pydevd (debug.py)
            w.debugger.feed(header.get("session", ""), body)
        elif op == "debug_open":
            w.debugger.open(header.get("session", ""))
        elif op == "debug_close":
            w.debugger.close(header.get("session", ""))
        elif op == "exit":
            w.loader.close()  # its live folder of the project's code
            os._exit(0)
        else:
            inbox.put((header, body))


def set_parent_death_signal() -> None:
    """Linux: the kernel SIGKILLs this process when the thread that started it exits."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def die_with_parent() -> None:
    """Never outlive the process that started this one (the runtime, its fork server, or a Ray
    actor), even when it is SIGKILLed: the kernel's parent-death signal on Linux, and a thread
    that watches the parent pid everywhere (also closing the gap before prctl took effect)."""
    parent = os.getppid()
    set_parent_death_signal()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_WATCH_S)
        os._exit(0)

    if parent == 1:
        return  # started under init on purpose (nothing to watch)
    _small_thread(watch, (), "parent-watch")


def _small_thread(target: Any, args: tuple[Any, ...], name: str) -> None:
    """A helper thread that costs the worker's memory limit (--worker-memory-mb, an address
    space limit) next to nothing: a small stack, and under a limit one malloc arena for the
    process (glibc reserves 64 MB of address space per thread arena otherwise)."""
    import resource

    if resource.getrlimit(resource.RLIMIT_AS)[
        0
    ] != resource.RLIM_INFINITY and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
        except (OSError, AttributeError):
            pass
    old = threading.stack_size(512 * 1024)
    try:
        threading.Thread(target=target, args=args, name=name, daemon=True).start()
    finally:
        threading.stack_size(old)


if __name__ == "__main__":
    os.environ.setdefault(IN_RUNTIME_ENV, "1")
    main()
