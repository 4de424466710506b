"""The editor's side of several runtimes: a project whose slipstream.toml has [runtimes]
(docs/runtimes.md). Which runtime serves an endpoint is slipstream.sdk.routing's decision; this
module keeps what the editor needs around it: each runtime's client and last known GPUs (so
lenses, hovers and diagnostics answer without a network call), the deploy to every runtime
that serves an endpoint, the client a Run goes to, and the status bar's list.

Blocking methods (connect, deploy, refresh) run in a worker thread (asyncio.to_thread).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slipstream.sdk import envvars

from .protocol import RoutedRuntime, RuntimeGpu
from .runtime import gpu_inventory

if TYPE_CHECKING:
    from slipstream.sdk.routing import Route, Router, RuntimeEntry

    from .documents import Documents

__all__ = ["EditorRouting"]

log = logging.getLogger(__name__)


class EditorRouting:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.reported: dict[
            tuple[str, str], list[str]
        ] = {}  # (name, url) -> GPUs its /health listed
        self.health: dict[tuple[str, str], dict[str, Any]] = {}
        self.connected: dict[tuple[str, str], bool] = {}
        self.clients: dict[tuple[str, str], Any] = {}
        self.embedded: Any = (
            None  # EmbeddedRuntime, started on the first deploy or run that needs it
        )
        self.specs: dict[
            Path, dict[str, dict[str, Any]]
        ] = {}  # root -> endpoint name -> spec (last deploy)
        self.synced: dict[Path, set[str]] = {}  # root -> runtimes the last deploy reached
        self.spend: dict[str, float] = {}  # runtime name -> what this editor's runs there cost
        self.last_root: Path | None = (
            None  # the routed project last deployed or run: the status bar's
        )

    # --- the table, offline ------------------------------------------------------------------
    def entries(self, root: Path | None) -> list[RuntimeEntry] | None:
        """The project's runtimes with what the editor knows of them; None when it has no
        [runtimes] (or SLIPSTREAM_RUNTIME_URL names one runtime) or they cannot be read."""
        if root is None or os.environ.get(envvars.RUNTIME_URL):
            return None
        from slipstream.sdk.config import load_project
        from slipstream.sdk.routing import RoutingError, load_runtimes

        try:
            entries = load_runtimes(load_project(root))
        except (RoutingError, ValueError) as exc:
            log.warning("%s", exc)
            return None
        if entries is None:
            return None
        for rt in entries:
            key = (rt.name, rt.url)
            if key in self.reported:
                rt.reported = list(self.reported[key])
            if rt.embedded and self.embedded is not None:
                rt.address, rt.token = self.embedded.url, self.embedded.token
        return entries

    def router(self, root: Path | None, ask: bool = False) -> Router | None:
        entries = self.entries(root)
        if entries is None:
            return None
        from slipstream.sdk.routing import Router

        return Router(entries, ask=self._ask if ask else None)

    def where(
        self, root: Path | None, gpu: Any, pinned: str | None, name: str
    ) -> tuple[Route | None, str | None]:
        """(route, None), or (None, why no runtime can serve it); (None, None) without routing."""
        from slipstream.errors import SlipstreamError

        router = self.router(root)
        if router is None:
            return None, None
        try:
            return router.route(gpu, pinned, name), None
        except SlipstreamError as exc:
            return None, str(exc)

    # --- connecting (blocking) -------------------------------------------------------------
    def client(self, rt: RuntimeEntry) -> Any:
        from slipstream.sdk.client import RuntimeClient

        key = (rt.name, rt.url)
        with self._lock:
            c = self.clients.get(key)
            if c is not None:
                return c
            if rt.embedded:
                if self.embedded is None:
                    from slipstream.sdk.embedded import EmbeddedRuntime

                    log.info("starting the embedded runtime (runtime %r of [runtimes])", rt.name)
                    self.embedded = EmbeddedRuntime.start()
                rt.address, rt.token = self.embedded.url, self.embedded.token
                c = RuntimeClient(rt.address, rt.token)
            else:
                rt.address = rt.address or rt.url
                c = RuntimeClient(rt.url, rt.token)
            self.clients[key] = c
            return c

    def _ask(self, rt: RuntimeEntry) -> None:
        key = (rt.name, rt.url)
        try:
            h = self.client(rt).health()
        except Exception as exc:  # offline: routing counts on its declared GPUs
            log.warning("runtime %s (%s) did not answer: %s", rt.name, rt.url, exc)
            self.connected[key] = False
            return
        from slipstream.sdk.routing import gpus_from_health

        rt.reported = self.reported[key] = gpus_from_health(h)
        self.health[key] = h
        self.connected[key] = True

    def refresh(self, root: Path | None) -> bool:
        """Ask every runtime for its GPUs again (the embedded one only once it runs); whether
        what routing knows changed (lenses and diagnostics then change too)."""
        before = (dict(self.reported), dict(self.connected))
        for rt in self.entries(root) or []:
            if rt.embedded and self.embedded is None:
                continue
            self._ask(rt)
        return before != (self.reported, self.connected)

    def deploy(
        self, root: Path, known: list[tuple[Any, str | None, str]], progress: Any = None
    ) -> Any:
        """Sync the project to every runtime serving one of its endpoints (sdk/routing.py);
        returns the SyncResult of the first (DeployError from any refuses the deploy)."""
        from slipstream.sdk.routing import sync_all

        router = self.router(root, ask=True)
        assert router is not None
        results = sync_all(router, self.client, root, known, progress=progress)
        for rt in router.runtimes:  # attached while the editor is open (sdk/attach.py)
            if rt.name in results:
                self.client(rt).attach(results[rt.name].project, "editor")
        specs: dict[str, dict[str, Any]] = {}
        for res in results.values():
            for e in res.endpoints:
                specs.setdefault(e.get("name", ""), e.get("spec") or {})
        self.specs[root] = specs
        self.synced[root] = set(results)
        self.last_root = root
        for rt in router.runtimes:
            if rt.name in results:
                self.connected[(rt.name, rt.url)] = True
        first = next(iter(results.values()))
        # what each runtime said of its endpoints' kept objects (kept.py), and where they are
        kept = {name: k for res in results.values() for name, k in (res.kept or {}).items()}
        endpoints = [e for res in results.values() for e in res.endpoints]
        return dataclasses.replace(
            first,
            kept=kept,
            endpoints=endpoints,
            unchanged=all(res.unchanged for res in results.values()),
        )

    def client_for(
        self, root: Path, name: str, gpu: Any = None, pinned: str | None = None
    ) -> tuple[Any, Route]:
        """The client of the runtime that serves endpoint `name` (its spec from the last deploy,
        else `gpu` and `pinned` as the editor reads them). NoRuntimeForGpu when none has its GPU."""
        spec = self.specs.get(root, {}).get(name)
        if spec is not None:
            gpu, pinned = spec.get("gpu") or (), spec.get("runtime")
        router = self.router(root, ask=True)
        assert router is not None
        route = router.route(gpu, pinned, name)
        return self.client(route.runtime), route

    # --- status ----------------------------------------------------------------------------
    def status(self, root: Path | None, costs: Any = None) -> list[RoutedRuntime]:
        """One entry per runtime: connected, GPUs, this editor's spend there, the endpoints of
        the project's last deploy routed to it."""
        router = self.router(root)
        if router is None or root is None:
            return []
        spend = self.spend
        endpoints = [
            (s.get("gpu") or (), s.get("runtime"), n) for n, s in self.specs.get(root, {}).items()
        ]
        mine: dict[str, list[str]] = {rt.name: [] for rt in router.runtimes}
        for gpu, pinned, name in endpoints:
            route, _ = self.where(root, gpu, pinned, name)
            if route is not None:
                mine[route.runtime.name].append(name)
        out: list[RoutedRuntime] = []
        for rt in router.runtimes:
            key = (rt.name, rt.url)
            connected = (
                self.connected.get(key, False) if not rt.embedded else self.embedded is not None
            )
            health = self.health.get(key)
            gpus: list[RuntimeGpu] = (
                gpu_inventory(health)
                if health
                else [
                    RuntimeGpu(name=n, memoryGb=0.0, count=rt.gpus().count(n))
                    for n in dict.fromkeys(rt.gpus())
                ]
            )
            out.append(
                RoutedRuntime(
                    name=rt.name,
                    url=rt.url,
                    kind="embedded" if rt.embedded else "remote",
                    connected=connected,
                    gpus=gpus,
                    spendUsd=round(spend.get(rt.name, 0.0), 8),
                    endpoints=sorted(mine[rt.name]),
                )
            )
        return out

    def close(self) -> None:
        with self._lock:
            clients, self.clients = list(self.clients.values()), {}
            embedded, self.embedded = self.embedded, None
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
        if embedded is not None:
            embedded.stop()


# --- what the editor shows: lenses, hovers, diagnostics ---------------------------------------


class Where:
    """Where one endpoint runs, as the lens, the hover and the diagnostic say it."""

    def __init__(
        self, runtime: str | None, url: str | None, problem: str | None, have: list[tuple[str, str]]
    ) -> None:
        self.runtime = runtime  # its runtime's name, or None when no runtime can serve it
        self.url = url
        self.problem = problem  # why none can (NoRuntimeForGpu's message)
        self.have = have  # (GPU, runtime) each runtime has, in the table's order: the quick fixes


def where_for(routing: EditorRouting, root: Path | None) -> Any:
    """A function endpoint -> Where for the project at `root`; None when it has no [runtimes]."""
    router = routing.router(root)
    if router is None:
        return None
    from slipstream.errors import SlipstreamError

    from .facts import facts_for

    have: list[tuple[str, str]] = []
    for rt in router.runtimes:
        for gpu in dict.fromkeys(rt.gpus()):
            if gpu not in [g for g, _ in have]:
                have.append((gpu, rt.name))

    def where(ep: Any) -> Where:
        facts = facts_for(ep)
        labels = facts.request.labels if facts.request is not None else ()
        pinned = ep.value("runtime")
        try:
            route = router.route(labels, pinned if isinstance(pinned, str) else None, ep.name)
        except SlipstreamError as exc:
            return Where(None, None, str(exc), have)
        return Where(route.runtime.name, route.runtime.url, None, have)

    return where


def routing_findings(index: Any, where: Any) -> list[Any]:
    """`no-runtime-gpu`: an endpoint whose GPU no configured runtime has, at its gpu= value,
    with a quick fix per GPU one of them has (the editor adds "Connect a GPU machine…")."""
    from .diagnostics import Edit, Finding, Fix

    out: list[Any] = []
    if where is None:
        return out
    for ep in index.endpoints:
        w = where(ep)
        if w.problem is None or "asks for" not in w.problem:
            continue
        arg = ep.args.get("gpu")
        span = arg.span if arg is not None else ep.decorator
        fixes = (
            [
                Fix(f'Change to gpu="{gpu}" ({rt} has it)', (Edit(arg.span, f'"{gpu}"'),), i == 0)
                for i, (gpu, rt) in enumerate(w.have)
            ]
            if arg is not None
            else []
        )
        out.append(Finding(span, w.problem, "no-runtime-gpu", "warning", fixes))
    return out


def routing_actions(index: Any, lines: Any, rng: Any, uri: str, where: Any) -> list[Any]:
    """Quick fixes of the `no-runtime-gpu` findings under `rng`: each GPU a runtime has, and
    the extension's "Connect a GPU machine…" (slipstream.connectMachine)."""
    from lsprotocol import types

    from .actions import _overlaps
    from .diagnostics import fix_edits, to_diagnostic
    from .positions import Span

    wanted = Span(
        rng.start.line,
        lines.column(rng.start.line, rng.start.character),
        rng.end.line,
        lines.column(rng.end.line, rng.end.character),
    )
    out: list[Any] = []
    for finding in routing_findings(index, where):
        if not _overlaps(finding.span, wanted):
            continue
        diagnostic = to_diagnostic(finding, lines)
        for fix in finding.fixes:
            out.append(
                types.CodeAction(
                    title=fix.title,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    is_preferred=fix.preferred,
                    edit=types.WorkspaceEdit(changes={uri: fix_edits(fix, lines)}),
                )
            )
        out.append(
            types.CodeAction(
                title="Connect a GPU machine…",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic],
                command=types.Command(title="Connect a GPU machine…", command=CONNECT_COMMAND),
            )
        )
    return out


CONNECT_COMMAND = "slipstream.connectMachine"  # the extension's (vscode-extension/src/connect.ts)


async def known_endpoints(documents: Documents, root: Path) -> list[tuple[Any, str | None, str]]:
    """(gpu labels, runtime=, name) of the endpoints in the open documents under `root`: where
    a deploy starts before the runtimes report the project's endpoints (sync_all)."""
    from .facts import facts_for
    from .paths import uri_to_path

    out: list[tuple[Any, str | None, str]] = []
    for uri in documents.open_uris():
        path = uri_to_path(uri)
        if path is None or path.suffix != ".py" or not path.resolve().is_relative_to(root):
            continue
        index = await documents.get(uri)
        for ep in index.endpoints:
            facts = facts_for(ep)
            pinned = ep.value("runtime")
            out.append(
                (
                    facts.request.labels if facts.request is not None else (),
                    pinned if isinstance(pinned, str) else None,
                    ep.name,
                )
            )
    return out
