"""The selected runtime: a remote one (SLIPSTREAM_RUNTIME_URL / slipstream.toml / selectRuntime)
or, with none configured, the embedded local runtime, started on first need.

Every call into the client blocks, so it runs in a worker thread (asyncio.to_thread).
Status changes go to the client as `slipstream/runtimeStatus`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .protocol import RuntimeGpu, RuntimeStatus

if TYPE_CHECKING:
    from slipstream.sdk.client import RuntimeClient

__all__ = ["RuntimeManager", "gpu_inventory"]

log = logging.getLogger(__name__)


def gpu_inventory(health: dict[str, Any]) -> list[RuntimeGpu]:
    """The runtime's devices grouped by model: one entry per device becomes {name, count}.

    Names are the catalog's ("H100") where the runtime recognised the card, else the driver's.
    """
    grouped: dict[tuple[str, float], int] = {}
    for device in health.get("gpus") or []:
        if not isinstance(device, dict):
            continue
        name = str(device.get("canonical") or device.get("name") or "GPU")
        memory = round(float(device.get("memory_gb") or 0), 1)
        grouped[(name, memory)] = grouped.get((name, memory), 0) + int(device.get("count") or 1)
    return [RuntimeGpu(name=n, memoryGb=m, count=c) for (n, m), c in grouped.items()]


class RuntimeManager:
    def __init__(self, notify: Callable[[RuntimeStatus], None], spend: Callable[[], float]) -> None:
        self._notify = notify
        self._spend = spend
        self._lock = asyncio.Lock()
        self.client: RuntimeClient | None = None
        self.url: str | None = None
        self.kind: Literal["embedded", "remote"] = "embedded"
        self.connected = False
        self.gpus: list[RuntimeGpu] = []
        self.endpoint_count = 0
        self._embedded: Any = None
        self._explicit: tuple[str, str] | Literal["embedded"] | None = None
        #: Called with no arguments whenever a different runtime is selected (its code is gone).
        self.on_change: list[Callable[[], None]] = []
        #: The project keys this editor deployed: the status counts only their endpoints (a
        #: shared runtime also serves other projects). None counts every endpoint.
        self.projects: Callable[[], set[str]] | None = None

    # --- which runtime -------------------------------------------------------------------
    def _choose(self, root: Path | None) -> Any:
        """selectRuntime's choice, else the configured runtime, else the embedded one, started
        now (slipstream.sdk.runtimes decides, as for the SDK and the CLI). Blocks: a thread."""
        from slipstream.sdk.config import load_project
        from slipstream.sdk.runtimes import ChosenRuntime, configured_or_embedded, start_embedded

        if self._explicit == "embedded":
            return start_embedded(root)
        if self._explicit is not None:
            return ChosenRuntime(*self._explicit)
        project = None
        if root is not None:
            try:
                project = load_project(root)
            except ValueError as exc:
                log.warning("%s", exc)
        return configured_or_embedded(root, project)

    async def ensure(self, root: Path | None = None) -> RuntimeClient:
        """The selected runtime's client, connecting or starting the embedded one if needed."""
        async with self._lock:
            if self.client is not None:
                return self.client
            # an embedded runtime starts, an ssh:// one connects (and may bootstrap its host): off the loop
            await asyncio.to_thread(self._use, root)
        await self.refresh()
        assert self.client is not None
        return self.client

    def _use(self, root: Path | None) -> None:
        from slipstream.sdk.client import RuntimeClient

        chosen = self._choose(root)
        try:
            self.client = RuntimeClient(chosen.url, chosen.token)
        except BaseException:
            chosen.stop()
            raise
        self._embedded = chosen.embedded
        self.url = chosen.url
        self.kind = "embedded" if chosen.is_embedded else "remote"
        log.info("%s runtime at %s", self.kind, chosen.url)

    async def select(self, url: str | None, token: str | None, embedded: bool) -> RuntimeStatus:
        """Switch runtimes (selectRuntime); the next deploy pushes the code to the new one."""
        await self.close()
        async with self._lock:
            if embedded or not url:
                self._explicit = "embedded"
            else:
                self._explicit = (url.rstrip("/"), token or "")
        for callback in self.on_change:
            callback()
        try:
            await self.ensure()
        except Exception as exc:  # a bad URL still answers with a status, marked disconnected
            log.warning("could not start or reach the runtime: %s", exc)
            if self._explicit != "embedded" and self._explicit is not None:
                self.url = self._explicit[0]
                self.kind = "remote"
            self.connected = False
            self._notify(self.status())
        return self.status()

    # --- status --------------------------------------------------------------------------
    def status(self) -> RuntimeStatus:
        return RuntimeStatus(
            url=self.url,
            kind=self.kind,
            connected=self.connected,
            gpus=list(self.gpus),
            spendUsd=round(self._spend(), 8),
            endpoints=self.endpoint_count,
        )

    async def refresh(self) -> RuntimeStatus:
        """Ask the runtime for its health and endpoints, then tell the client."""
        client = self.client
        if client is not None:
            try:
                health = await asyncio.to_thread(client.health)
                endpoints = await asyncio.to_thread(client.endpoints)
            except Exception as exc:
                log.warning("runtime at %s did not answer: %s", self.url, exc)
                self.connected = False
            else:
                self.connected = True
                self.gpus = gpu_inventory(health)
                mine = self.projects() if self.projects is not None else None
                self.endpoint_count = len(
                    [e for e in endpoints if mine is None or e.get("project") in mine]
                )
        status = self.status()
        self._notify(status)
        return status

    async def close(self) -> None:
        async with self._lock:
            client, embedded = self.client, self._embedded
            self.client = None
            self._embedded = None
            self.connected = False
            self.url = None
            self.gpus = []
            self.endpoint_count = 0
        if client is not None:
            await asyncio.to_thread(client.close)
        if embedded is not None:
            log.info("stopping the embedded runtime")
            await asyncio.to_thread(embedded.stop)
