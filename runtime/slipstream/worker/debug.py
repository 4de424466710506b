"""Debugging calls in a worker under debugpy, reached only through the worker's own channel.

debugpy's debugger (pydevd) speaks the Debug Adapter Protocol (DAP) itself. It is started here
without any listening socket: when the runtime relays a client to this worker (`debug_open`),
pydevd gets one end of a socketpair, and a relay thread carries each DAP message between the
other end and the worker's channel to the runtime (`dap` messages). So debugging opens no port
on the runtime host, and works wherever the worker's channel reaches (a Ray actor too).

Between sessions pydevd stays loaded but idle (debugpy disables tracing while no client is
connected), so a worker that was debugged goes back to serving calls.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..protocol import envvars

__all__ = ["Debugger", "available"]

# how long a debugged call waits for a client to attach and configure before it gives up
ATTACH_TIMEOUT_S = float(os.environ.get(envvars.DEBUG_ATTACH_TIMEOUT, "300"))


def available() -> str:
    """'' when debugpy can be imported here, else what to do about it."""
    try:
        import debugpy  # noqa: F401
    except ImportError:
        return f"debugpy is not installed in the worker's environment ({sys.executable}): pip install debugpy"
    return ""


class DebugUnavailable(RuntimeError):
    pass


class Debugger:
    """pydevd in this process, one client session at a time. `send(header, body)` writes to
    the runtime's channel (thread-safe)."""

    def __init__(self, send: Callable[..., None]) -> None:
        self.send = send
        self.py_db: Any = None
        self.session = ""
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    # --- pydevd -------------------------------------------------------------------------
    def ensure(self) -> None:
        """Load pydevd (once; ~0.2 s) with tracing set up and no network yet."""
        if self.py_db is not None:
            return
        problem = available()
        if problem:
            raise DebugUnavailable(problem)
        # pydevd's warning about frozen stdlib modules concerns breakpoints in the standard
        # library only; in the call's logs it would only alarm
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        import debugpy.server  # noqa: F401 - forces debugpy's pydevd and its DAP protocol
        import pydevd
        from _pydevd_bundle.pydevd_constants import get_global_debugger

        # the worker's own helper threads (the channel reader, the parent watch) are never
        # traced nor suspended: a stop at a breakpoint must not stop the relay
        for t in threading.enumerate():
            if t is not threading.main_thread():
                _mark_internal(t)
        skip = tuple(
            os.path.dirname(os.path.abspath(f))
            for f in (sys.modules["debugpy"].__file__, sys.modules["slipstream"].__file__)
            if f
        )
        original = pydevd.PyDB.create_wait_for_connection_thread
        pydevd.PyDB.create_wait_for_connection_thread = lambda self: None  # no listening socket
        try:
            pydevd.settrace(
                host="127.0.0.1",
                port=0,
                suspend=False,
                trace_only_current_thread=False,
                patch_multiprocessing=False,
                wait_for_ready_to_run=False,
                block_until_connected=False,
                notify_stdin=False,
                dont_trace_start_patterns=skip,
                protocol="dap",
            )
        finally:
            pydevd.PyDB.create_wait_for_connection_thread = original
        self.py_db = get_global_debugger()

    # --- the session's connection ---------------------------------------------------------
    def open(self, session: str) -> None:
        """A client is relayed to this worker: give pydevd a fresh connection for it."""
        self.ensure()
        from _pydevd_bundle.pydevd_api import PyDevdAPI

        with self._lock:
            old = self._sock
            self._sock, self.session = None, ""
        if old is not None:
            _close(old)
        if getattr(self.py_db, "reader", None) is not None:
            PyDevdAPI().request_disconnect(self.py_db, resume_threads=False)
        ours, theirs = socket.socketpair()
        self.py_db.initialize_network(theirs, terminate_on_socket_close=False)
        with self._lock:
            self._sock, self.session = ours, session
        t = threading.Thread(
            target=self._pump, args=(ours, session), name=f"dap-{session[:8]}", daemon=True
        )
        _mark_internal(t)
        t.start()

    def feed(self, session: str, body: bytes | bytearray) -> None:
        """One DAP message (JSON bytes) from the client, for pydevd."""
        with self._lock:
            sock = self._sock if session == self.session else None
        if sock is None:
            return
        try:
            sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + bytes(body))
        except OSError:
            pass

    def close(self, session: str) -> None:
        """The client is gone: pydevd drops its breakpoints and lets every thread run."""
        with self._lock:
            if session != self.session or self._sock is None:
                return
            sock, self._sock, self.session = self._sock, None, ""
        from _pydevd_bundle.pydevd_api import PyDevdAPI

        try:
            PyDevdAPI().request_disconnect(self.py_db, resume_threads=True)
        except Exception:  # noqa: BLE001 - best effort; the socket closes anyway
            pass
        _close(sock)

    def _pump(self, sock: socket.socket, session: str) -> None:
        """pydevd -> the runtime: each DAP message as one `dap` message on the channel."""
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while True:
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if not sep:
                    break
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if len(rest) < length:
                    break
                body, buf = rest[:length], rest[length:]
                try:
                    self.send({"op": "dap", "session": session}, [body])
                except OSError:
                    return

    # --- the debugged call ------------------------------------------------------------------
    def wait_for_client(self, timeout: float = ATTACH_TIMEOUT_S) -> bool:
        """Block until a client has attached and sent configurationDone (its breakpoints are
        set); False when none came within `timeout` seconds."""
        self.ensure()
        done = threading.Event()
        timer = threading.Timer(timeout, done.set)
        timer.daemon = True
        _mark_internal(timer)
        timer.start()
        try:
            self.py_db.block_until_configuration_done(cancel=done)
        finally:
            timer.cancel()
        return self.attached()

    def attached(self) -> bool:
        return self.py_db is not None and self.py_db.is_attached() and bool(self.session)

    def post_mortem(self, exc: BaseException) -> None:
        """An uncaught exception of a debugged call: stop at the line that raised it (when the
        client asked for uncaught-exception stops), with its frames' variables."""
        if not self.attached() or exc.__traceback__ is None:
            return
        tb = exc.__traceback__
        self.py_db.trigger_exception_handler((type(exc), exc, tb), as_uncaught=True)

    def stop_here(self, frame: Any) -> None:
        """breakpoint() in endpoint code: stop at the line after it, in the caller's frame."""
        import pydevd

        pydevd.settrace(
            suspend=True,
            trace_only_current_thread=True,
            patch_multiprocessing=False,
            stop_at_frame=frame,
            notify_stdin=False,
        )


def _mark_internal(t: threading.Thread) -> None:
    t.pydev_do_not_trace = True  # type: ignore[attr-defined]
    t.is_pydev_daemon_thread = True  # type: ignore[attr-defined]


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
