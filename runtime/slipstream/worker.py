"""A worker process: runs one endpoint's calls (or, as the scanner, imports new code to check it).

Started by the runtime's pool with one end of a socketpair (--fd), or by a Ray actor that dials
the runtime back over TCP (--connect, see ray_backend.py). It never sees HTTP; the server
forwards request bodies untouched and this process decodes them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import io
import json
import os
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import keeper as keep_mod
from . import shm, wire
from .endpoint import IN_RUNTIME_ENV, Endpoint, bad_arguments
from .errors import ErrorInfo, error_info
from .ipc import Channel
from .jsontypes import ArgumentError, convert_arguments, param_schemas
from .reload import CodeLoader, module_for, shadowed_stdlib

_call = threading.local()


class _LogStream(io.TextIOBase):
    """stdout/stderr of user code, sent to the runtime line by line, tagged with the call."""

    def __init__(self, ch: Channel, stream: str) -> None:
        self.ch, self.stream = ch, stream
        self._buf = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        pending = getattr(self._buf, "text", "") + s
        *lines, rest = pending.split("\n")
        self._buf.text = rest
        if lines:
            self._send("\n".join(lines) + "\n")
        return len(s)

    def flush(self) -> None:
        pending = getattr(self._buf, "text", "")
        if pending:
            self._buf.text = ""
            self._send(pending)

    def _send(self, text: str) -> None:
        try:
            self.ch.send({"op": "log", "id": getattr(_call, "id", None), "stream": self.stream, "text": text})
        except OSError:
            pass


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

    # --- code -------------------------------------------------------------------------
    def _err(self, exc: BaseException) -> ErrorInfo:
        info = error_info(exc, self.loader.relative)
        if isinstance(exc, SyntaxError) and exc.filename:
            rel = self.loader.relative(exc.filename)
            if rel:
                from .errors import Frame

                info.frames.append(Frame(rel, exc.lineno or 0, "<module>", (exc.text or "").strip(), True))
        return info

    def init(self, h: dict[str, Any]) -> None:
        self.name, self.module = h["endpoint"], h["module"]
        self.concurrency = max(1, int(h.get("concurrency", 1)))
        self.pool = ThreadPoolExecutor(self.concurrency, "call")
        started = time.perf_counter()
        try:
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

    def _bind(self, run_setup: bool) -> None:
        mod = importlib.import_module(self.module)
        ep = _find(mod, self.name)
        if ep is None:
            raise LookupError(f"endpoint {self.name!r} is no longer defined in {self.module}")
        self.endpoint = ep
        if ep.is_class and (run_setup or self.instance is None):
            inst = ep.target()
            self.setup_error = None
            if callable(getattr(inst, "setup", None)):
                keep_mod.begin_setup(self.name)
                ok = False
                try:
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
        try:
            gen_dir = _gen_dir(h)
        except Exception as exc:  # noqa: BLE001 - the runtime replaces this worker
            self.ch.send({"op": "load_error", "gen": h["gen"], "error": self._err(exc).to_dict()})
            return
        report, purged = self.loader.switch(h["gen"], gen_dir, h["manifest"], h.get("paths"))
        if report.mode == "restart":
            self.ch.send({"op": "loaded", "gen": h["gen"], "mode": "restart", "reason": report.reason})
            return
        try:
            self._bind(run_setup=self.module in report.reexecuted)
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
            }
        )

    def scan(self, h: dict[str, Any]) -> None:
        """Import the project's endpoint modules from a new generation and describe them."""
        old = (self.loader.generation, self.loader.gen_dir, self.loader.manifest)
        started = time.perf_counter()
        for p in h.get("extra_paths", []):
            if p not in sys.path:
                sys.path.append(p)  # dependencies installed for endpoints, visible to the import check
        shadows = shadowed_stdlib(h["manifest"], h.get("paths") or [""])
        if shadows:
            self.ch.send({"op": "scan_error", "error": _shadow_error(shadows).to_dict()})
            return
        report, purged = self.loader.switch(h["gen"], h["gen_dir"], h["manifest"], h.get("paths"))
        if report.mode == "restart":
            self.ch.send({"op": "scanned", "restart": report.reason, "endpoints": []})
            return
        found: list[dict[str, Any]] = []
        try:
            for rel in h.get("entries", []):
                mod_name = module_for(rel, h["manifest"], self.loader.paths)
                if not mod_name:
                    continue
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
        if self.concurrency == 1:
            self._run(h, body)  # one call at a time: no thread hand-off on the hot path
        else:
            self.pool.submit(self._run, h, body)

    def _drain(self) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.inflight == 0)

    def _run(self, h: dict[str, Any], body: bytearray) -> None:
        cid = h["id"]
        _call.id = cid
        started = time.perf_counter()
        fmt = h.get("format", "pickle")
        try:
            try:
                fn, args, kwargs = self._prepare(h, body)
            except _BadRequest as exc:
                self._send_error(cid, started, exc.info)
                return
            if self.setup_error is not None:
                self._send_error(cid, started, self.setup_error)
                return
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                for item in _iterate(result):
                    self.ch.send({"op": "item", "id": cid}, self._encode(item, fmt))
                result = None
            sys.stdout.flush()
            sys.stderr.flush()
            header = {"op": "result", "id": cid, "duration": time.perf_counter() - started}
            chunks = self._encode(result, fmt)
            size = wire.frame_length(chunks)
            if h.get("shm_reply") and size >= shm.THRESHOLD:
                buf = shm.SharedBuffer(size, "r-")
                buf.write(chunks)
                header["shm"] = buf.ref()
                buf.release()
                chunks = []
            self.ch.send(header, chunks)
        except BaseException as exc:  # noqa: BLE001 - user code: every failure goes back
            sys.stdout.flush()
            sys.stderr.flush()
            self._send_error(cid, started, self._err(exc))
        finally:
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
                raise _BadRequest(f"endpoint {ep.name!r} has no method {method!r} (has: {', '.join(ep.methods())})")
        else:
            if method:
                raise _BadRequest(f"endpoint {ep.name!r} is a function; it has no method {method!r}")
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

    def _encode(self, value: Any, fmt: str) -> list[bytes | memoryview]:
        if fmt == "pickle":
            return wire.dumps(value)
        return [wire.json_dumps(wire.to_display(value))]

    def _send_error(self, cid: int, started: float, info: ErrorInfo) -> None:
        d = info.to_dict()
        body: list[bytes | memoryview] = [info.pickled] if info.pickled else []
        self.ch.send({"op": "error", "id": cid, "duration": time.perf_counter() - started, "error": d}, body)


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.info = ErrorInfo("TypeError", message, message, kind="bad-request")


def _iterate(gen: Any) -> Any:
    if inspect.isasyncgen(gen):
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(gen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.close()
    else:
        yield from gen


def _shadow_error(shadows: list[tuple[str, str]]) -> ErrorInfo:
    """A deploy refusal for project modules named like standard-library ones."""
    from .errors import Frame

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
    return ErrorInfo("ShadowedModule", message, message, frames, kind="deploy")


def _endpoints_in(mod: Any) -> list[Endpoint]:
    return [v for v in vars(mod).values() if isinstance(v, Endpoint) and v.__module__ == mod.__name__]


def _find(mod: Any, name: str) -> Endpoint | None:
    return next((e for e in _endpoints_in(mod) if e.name == name), None)


def _describe(ep: Endpoint, mod_name: str, rel: str) -> dict[str, Any]:
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
        "generator": bool(not ep.is_class and inspect.isgeneratorfunction(fn)),
        "signature": _signatures(ep, defs),
        "schemas": defs,  # shared type definitions the signature's schemas refer to
        "doc": inspect.getdoc(fn) or "",
        "spec": ep.spec.to_dict(),
        "warnings": [p.describe() for p in ep.warnings],
    }


def _signatures(ep: Endpoint, defs: dict[str, Any]) -> dict[str, Any]:
    targets = {m: getattr(ep.target, m) for m in ep.methods()} if ep.is_class else {"": ep.target}
    out = {}
    for m, fn in targets.items():
        params = []
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
    ap = argparse.ArgumentParser(prog="python -m slipstream.worker")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--fd", type=int, help="one end of a socketpair the runtime passed down")
    how.add_argument("--connect", metavar="HOST:PORT", help="dial the runtime's worker port over TCP")
    ap.add_argument("--worker-id", default="", help="with --connect: the id the runtime gave this worker")
    args = ap.parse_args(argv)
    if args.connect:
        # the per-worker secret comes by environment (argv is visible to `ps`), and user code never sees it
        secret = os.environ.pop("SLIPSTREAM_WORKER_SECRET", "")
        serve(_connect(args.connect), {"worker": args.worker_id, "secret": secret})
    else:
        serve(socket.socket(fileno=args.fd))


def serve(sock: socket.socket, hello: dict[str, Any] | None = None) -> None:
    """Run the worker loop on a connected channel until told to exit (then exit the process)."""
    ch = Channel(sock)
    sys.stdout = _LogStream(ch, "stdout")  # type: ignore[assignment]
    sys.stderr = _LogStream(ch, "stderr")  # type: ignore[assignment]
    w = Worker(ch)
    ch.send({"op": "hello", "pid": os.getpid(), **(hello or {})})
    handlers = {"init": w.init, "load": w.load, "scan": w.scan}
    while True:
        try:
            header, body = ch.recv()
        except (EOFError, OSError):
            break
        op = header.get("op")
        if op == "call":
            w.submit(header, body)
        elif op == "exit":
            break
        elif op in handlers:
            try:
                handlers[op](header)
            except BaseException:  # noqa: BLE001 - never die silently
                ch.send({"op": "fatal", "error": {"type": "InternalError", "message": traceback.format_exc(), "traceback": ""}})
    os._exit(0)


if __name__ == "__main__":
    os.environ.setdefault(IN_RUNTIME_ENV, "1")
    main()
