"""Dev sessions attached to projects: while one is (`slipstream dev`, the editor's daemon, a
script using the SDK), each endpoint of its project keeps max(workers_min, 1) warm workers past
its idle_timeout, so the models they keep() survive an engineer reading code for a while.

A client attaches with `PUT /v1/projects/{key}/sessions/{id}` and renews it the same way every
third of the lease; `DELETE` ends it. One that stops renewing (a crashed laptop, a killed
process) ends when its lease runs out, so it never holds a GPU for long. The idle clock of a
project's workers starts when its last session ends (pools.Pool._reap_idle)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sessions", "DEFAULT_LEASE_S", "SESSION_ID_RE"]

DEFAULT_LEASE_S = 60.0  # serve --session-lease / SLIPSTREAM_SESSION_LEASE
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CLIENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass
class DevSession:
    id: str
    project: str
    client: str  # what attached: "dev", "editor", "sdk" (its own word, shown by status)
    expires: float  # time.monotonic() when it ends unless renewed
    started_at: float = field(default_factory=time.time)


class Sessions:
    """The runtime's attached sessions, expired lazily whenever asked (the pools' reapers ask
    every second at most)."""

    def __init__(self, lease: float = DEFAULT_LEASE_S) -> None:
        self.lease = lease
        self._live: dict[tuple[str, str], DevSession] = {}
        self._ended: dict[str, float] = {}  # project -> monotonic time its last session ended

    def renew(self, project: str, session: str, client: str = "sdk") -> DevSession:
        """Attach, or extend an attached session's lease by a full lease from now."""
        self._expire()
        key = (project, session)
        s = self._live.get(key)
        if s is None:
            s = self._live[key] = DevSession(session, project, client, 0.0)
        s.expires = time.monotonic() + self.lease
        return s

    def end(self, project: str, session: str) -> bool:
        """Detach (a client saying goodbye); False if it was not attached (or already expired)."""
        self._expire()
        s = self._live.pop((project, session), None)
        if s is None:
            return False
        self._ended[project] = max(self._ended.get(project, 0.0), time.monotonic())
        return True

    def _expire(self) -> None:
        now = time.monotonic()
        for key, s in [(k, s) for k, s in self._live.items() if s.expires <= now]:
            del self._live[key]
            self._ended[s.project] = max(self._ended.get(s.project, 0.0), s.expires)

    def hold(self, project: str | None) -> tuple[bool, float]:
        """(attached: a session holds the project now, ended: the monotonic time its last
        session ended, 0.0 if none ever did): a pool's workers count as idle from then on."""
        self._expire()
        if project is None:
            return False, 0.0
        attached = any(p == project for p, _ in self._live)
        return attached, self._ended.get(project, 0.0)

    def describe(self, project: str) -> list[dict[str, Any]]:
        """The project's attached sessions, for GET /v1/projects and `slipstream status`."""
        self._expire()
        now = time.monotonic()
        return [
            {
                "id": s.id,
                "client": s.client,
                "started_at": s.started_at,
                "expires_in_s": round(s.expires - now, 1),
            }
            for (p, _), s in sorted(self._live.items())
            if p == project
        ]
