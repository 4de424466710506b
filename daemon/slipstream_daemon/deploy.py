"""Save-to-deploy: sync a project to the selected runtime on didSave and on outside changes.

Requests for one project are coalesced (a "save all" is one deploy) and run one at a time.
Each deploy reports workDoneProgress when the client supports it, and ends in a
`slipstream/deployResult` notification. A generation the runtime refuses becomes a diagnostic
at the file and line of the error; the next good deploy clears it. Kept objects that still run
their old code after the reload are named in the result and become warnings (kept.py).

From its first deploy on (started before the sync), watchfiles watches a project, so files
changed outside the editor (a `git checkout`, a formatter) are deployed too, even mid-deploy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from . import workprogress
from .diagnostics import Reported, ReportedProblems
from .kept import stale_message
from .paths import local_file
from .protocol import NOTIFY_DEPLOY_RESULT, DeployError, DeployResult

if TYPE_CHECKING:
    from pygls.progress import Progress

    from .kept import KeptObjects
    from .routed import EditorRouting
    from .runtime import RuntimeManager

__all__ = ["Deployer"]

log = logging.getLogger(__name__)

_COALESCE_S = 0.05
_WATCH_DEBOUNCE_MS = 300
_SAVE_ECHO_S = 3.0  # a file change this soon after the editor saved it is that save


@dataclass
class _Queued:
    future: asyncio.Future[DeployResult]
    announce_unchanged: bool = False  # publish even when nothing changed
    triggers: set[str] = field(default_factory=set)


class Deployer:
    """Deploys projects to the selected runtime (or, with [runtimes], to each of theirs).

    runtime: the selected runtime; routing: several runtimes (routed.py); reported/republish:
    deploy refusals as diagnostics; endpoints: a project root's endpoints in the open documents
    (routed.known_endpoints); notify: sends the client a notification (deployResult);
    log_message: a line in the client's output; progress: the client's work-done progress, or
    None when it has none; kept: the kept objects a reload left on old code (kept.py)."""

    def __init__(
        self,
        runtime: RuntimeManager,
        reported: ReportedProblems,
        republish: Callable[[set[Path]], Awaitable[None]],
        *,
        routing: EditorRouting,
        endpoints: Callable[[Path], Awaitable[list[Any]]],
        notify: Callable[[str, Any], None],
        log_message: Callable[[types.LogMessageParams], None],
        progress: Callable[[], Progress | None],
        kept: KeptObjects | None = None,
    ) -> None:
        self.runtime = runtime
        self.kept = kept
        self.routing = routing
        self.endpoints = endpoints
        self.notify = notify
        self.log_message = log_message
        self.progress = progress
        self.reported = reported
        self.republish = republish
        self._locks: dict[Path, asyncio.Lock] = {}
        self._queued: dict[Path, _Queued] = {}
        self._watchers: dict[Path, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self.deployed: set[Path] = set()
        self._saved_at: dict[Path, float] = {}  # files the editor saved (their deploy is queued)

    def saved(self, path: Path) -> None:
        """The editor saved `path`: the watcher should not deploy it a second time."""
        self._saved_at[path.resolve()] = time.monotonic()

    def forget_runtime(self) -> None:
        """A different runtime was selected: nothing is deployed there yet."""
        self.deployed.clear()

    # --- requests ------------------------------------------------------------------------
    def request(
        self, root: Path, trigger: str, announce_unchanged: bool = True
    ) -> asyncio.Future[DeployResult]:
        """Deploy `root` soon; requests that arrive before it starts share its result."""
        queued = self._queued.get(root)
        if queued is None:
            loop = asyncio.get_running_loop()
            queued = self._queued[root] = _Queued(loop.create_future())
            asyncio.ensure_future(self._run_queued(root, queued))
        queued.announce_unchanged |= announce_unchanged
        queued.triggers.add(trigger)
        return queued.future

    async def _run_queued(self, root: Path, queued: _Queued) -> None:
        await asyncio.sleep(_COALESCE_S)
        lock = self._locks.setdefault(root, asyncio.Lock())
        async with lock:
            if self._queued.get(root) is queued:
                del self._queued[root]
            try:
                result = await self._deploy(root, queued.announce_unchanged, queued.triggers)
            except Exception as exc:  # never leave a waiter hanging
                log.exception("deploy of %s failed", root)
                result = DeployResult(
                    ok=False,
                    changed=[],
                    uploaded=0,
                    durationMs=0.0,
                    error=DeployError(type=type(exc).__name__, message=str(exc)),
                )
            if not queued.future.done():
                queued.future.set_result(result)

    async def deploy(self, root: Path, trigger: str = "command") -> DeployResult:
        return await self.request(root, trigger, announce_unchanged=True)

    async def ensure_deployed(self, root: Path) -> DeployResult:
        """Make the runtime run the current files before a call (quiet when nothing changed)."""
        return await self.request(root, "run", announce_unchanged=False)

    # --- one deploy ----------------------------------------------------------------------
    async def _deploy(
        self, root: Path, announce_unchanged: bool, triggers: set[str]
    ) -> DeployResult:
        from slipstream.errors import DeployError as SdkDeployError
        from slipstream.sdk.sync import sync_project

        started = time.perf_counter()
        token = await self._begin(root)
        result: DeployResult
        changed_paths: set[Path] = set()
        try:
            _check_root(root)
            # watched from the first deploy on, before the sync: a file changed by another tool
            # while it runs, or just after it, is deployed next (started after, it was missed)
            self.watch(root)
            report = self._reporter(token)
            if (
                self.routing.entries(root) is not None
            ):  # several runtimes: each serving an endpoint (routed.py)
                synced = await asyncio.to_thread(
                    self.routing.deploy, root, await self.endpoints(root), report
                )
            else:
                client = await self.runtime.ensure(root)
                # a file rewritten mid-sync (an editor or formatter saving again) is retried inside
                synced = await asyncio.to_thread(sync_project, client, root, progress=report)
                # attached while the editor is open: each endpoint keeps a warm worker past its
                # idle_timeout (once per project; ended when the daemon closes the client)
                await asyncio.to_thread(client.attach, synced.project, "editor")
        except SdkDeployError as exc:
            where = local_file(exc.file, [root]) if exc.file else None
            error = DeployError(
                type=exc.type,
                message=exc.message,
                file=str(where) if where else exc.file,
                line=exc.line,
            )
            items = []
            if where is not None:
                items.append(
                    Reported(
                        where,
                        exc.line or 1,
                        f"Deploy refused: {exc.type}: {exc.message}. The runtime keeps serving "
                        "the previous code; fix this and save again.",
                        "deploy-error",
                        str(root),
                    )
                )
            changed_paths |= self.reported.replace("deploy-error", str(root), items)
            result = _refused(started, error)
        except Exception as exc:
            log.warning("deploy of %s failed: %s", root, exc)
            result = _refused(started, DeployError(type=type(exc).__name__, message=str(exc)))
        else:
            changed_paths |= self.reported.replace("deploy-error", str(root), [])
            changed_paths |= self.reported.clear_under("remote-exception", root)
            self.deployed.add(root)
            self.watch(root)
            result = DeployResult(
                ok=True,
                generation=synced.generation,
                changed=[str(root / rel) for rel in synced.changed],
                uploaded=synced.uploaded,
                durationMs=synced.duration_ms,
            )
            if self.kept is not None:
                kept = await self.kept.deployed(root, synced)
                if kept is not None:
                    result["kept"] = kept
        self._end(token, result)
        if changed_paths:
            await self.republish(changed_paths)
        if announce_unchanged or not result["ok"] or result["changed"]:
            self.notify(NOTIFY_DEPLOY_RESULT, result)
            stale = result.get("kept", {}).get("stale")
            level = (
                types.MessageType.Info if result["ok"] and not stale else types.MessageType.Warning
            )
            self.log_message(types.LogMessageParams(type=level, message=_describe(root, result)))
        if result["ok"]:
            asyncio.ensure_future(self.runtime.refresh())
        log.info("%s (%s)", _describe(root, result), ", ".join(sorted(triggers)))
        return result

    async def _begin(self, root: Path) -> str | None:
        return await workprogress.begin(self.progress(), "deploy", f"Deploying {root.name}…")

    def _reporter(self, token: str | None) -> Callable[[str], None] | None:
        """Relays the runtime's progress lines (dependency installs) from the sync's thread."""
        progress = self.progress()
        if token is None or progress is None:
            return None
        loop = asyncio.get_running_loop()

        def report(line: str) -> None:
            if line:
                msg = types.WorkDoneProgressReport(message=line[:200])
                loop.call_soon_threadsafe(progress.report, token, msg)

        return report

    def _end(self, token: str | None, result: DeployResult) -> None:
        workprogress.end(self.progress(), token, _summary(result))

    # --- outside changes -----------------------------------------------------------------
    def watch(self, root: Path) -> None:
        if root in self._watchers or self._stop.is_set():
            return
        self._watchers[root] = asyncio.ensure_future(self._watch(root))

    async def _watch(self, root: Path) -> None:
        from watchfiles import awatch

        from slipstream.sdk.config import load_project
        from slipstream.sdk.sync import is_ignored

        try:
            async for changes in awatch(
                root, debounce=_WATCH_DEBOUNCE_MS, stop_event=self._stop, recursive=True
            ):
                relevant = []
                now = time.monotonic()
                try:
                    include = load_project(root).include  # [sync] include: data files it syncs too
                except ValueError:
                    include = []  # a broken slipstream.toml: the deploy itself will say so
                for _, name in changes:
                    path = Path(name).resolve()
                    try:
                        rel = path.relative_to(root).as_posix()
                    except ValueError:
                        continue
                    if now - self._saved_at.get(path, -1e9) < _SAVE_ECHO_S:
                        continue  # the editor's own save: didSave already asked for a deploy
                    if not is_ignored(rel, include):
                        relevant.append(rel)
                if relevant:
                    log.info("files changed outside the editor: %s", ", ".join(relevant[:5]))
                    self.request(root, "watch", announce_unchanged=False)
        except Exception as exc:
            log.warning("stopped watching %s: %s", root, exc)
        finally:
            self._watchers.pop(root, None)

    async def close(self) -> None:
        self._stop.set()
        tasks = list(self._watchers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ProjectRootError(ValueError):
    """Refusing to sync a folder that is surely not one project."""


def _check_root(root: Path) -> None:
    if (root / "slipstream.toml").is_file():
        return
    if root == Path.home().resolve() or root.parent == root:
        raise ProjectRootError(
            f"{root} has no slipstream.toml and is not a project folder: syncing it would upload "
            "everything under it. Put the file in a project folder with a slipstream.toml."
        )


def _summary(result: DeployResult) -> str:
    if not result["ok"]:
        err = result.get("error") or {}
        file = err.get("file")
        where = f" ({Path(file).name}:{err.get('line')})" if file else ""
        return f"Deploy failed: {err.get('type', 'Error')}: {err.get('message', '')}{where}"
    changed = result["changed"]
    what = f"{len(changed)} file(s) changed" if changed else "no changes"
    line = (
        f"Deployed generation {result.get('generation')}: {what} in {result['durationMs']:.0f} ms"
    )
    kept = result.get("kept")
    if kept and kept["updated"]:
        line += f"; {kept['updated']} kept object(s) follow the saved code"
    for s in kept["stale"] if kept else []:
        line += f"; ⚠ {s['endpoint']}: {stale_message(s)}"
    return line


def _describe(root: Path, result: DeployResult) -> str:
    return f"{root.name}: {_summary(result)}"


def _refused(started: float, error: DeployError) -> DeployResult:
    return DeployResult(
        ok=False,
        changed=[],
        uploaded=0,
        durationMs=round((time.perf_counter() - started) * 1000, 2),
        error=error,
    )
