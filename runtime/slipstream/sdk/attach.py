"""Dev sessions: while a client is attached to a project on a runtime (`slipstream dev`, the
editor's daemon, a script using the SDK), each of the project's endpoints keeps a warm worker,
and so its keep() models, past its idle_timeout (server/sessions.py).

One thread per runtime client renews its sessions every third of the runtime's lease; close()
(the client's, or at the process's exit) ends them. A process that dies without saying goodbye
is dropped when its lease runs out."""

from __future__ import annotations

import atexit
import secrets
import threading
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from .client import RuntimeClient

__all__ = ["Attachments"]

_UNSUPPORTED = (404, 405)  # a runtime older than sessions: nothing to keep alive there


class Attachments:
    """The projects one RuntimeClient holds attached on its runtime."""

    def __init__(self, client: RuntimeClient) -> None:
        self.client = client
        self.sessions: dict[str, tuple[str, str]] = {}  # project -> (session id, client word)
        self.renew_s = 20.0  # the runtime's answer replaces it: a third of its lease
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.close)

    def attach(self, project: str, client: str = "sdk") -> None:
        """Attach `project` (once; later calls do nothing) and keep it attached."""
        with self._lock:
            if self._stop.is_set() or project in self.sessions:
                return
            sid = secrets.token_hex(8)
            self.sessions[project] = (sid, client)
        self._renew(project, sid, client)
        with self._lock:
            if self._thread is None and self.sessions and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._beat, name="slipstream-session", daemon=True
                )
                self._thread.start()

    def _path(self, project: str, sid: str) -> str:
        return f"/v1/projects/{project}/sessions/{sid}"

    def _renew(self, project: str, sid: str, client: str) -> None:
        try:
            r = self.client.http.put(
                self._path(project, sid), json={"client": client}, timeout=min(self.renew_s, 5.0)
            )
        except httpx.HTTPError:
            return  # the runtime is away (restarting?): the next beat attaches again
        if r.status_code in _UNSUPPORTED:
            with self._lock:
                self.sessions.pop(project, None)
            return
        if r.status_code < 400:
            try:
                self.renew_s = max(float(r.json().get("renew_s", self.renew_s)), 0.05)
            except (ValueError, TypeError, AttributeError):
                pass

    def _beat(self) -> None:
        while not self._stop.wait(self.renew_s):
            with self._lock:
                held = list(self.sessions.items())
            for project, (sid, client) in held:
                if self._stop.is_set():
                    return
                self._renew(project, sid, client)

    def close(self) -> None:
        """End every session (the runtime starts the idle clock of their workers)."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            held, self.sessions = list(self.sessions.items()), {}
            beating = self._thread
        atexit.unregister(self.close)
        if beating is not None and beating is not threading.current_thread():
            beating.join(timeout=1.0)  # a renewal in flight must not land after the goodbye
        for project, (sid, _) in held:
            try:
                self.client.http.delete(self._path(project, sid), timeout=2.0)
            except (httpx.HTTPError, RuntimeError):  # gone, or its connections already closed
                pass
