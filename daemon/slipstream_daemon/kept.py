"""Never silently stale: kept objects that run old code after a reload, and their rebuild.

After a reload, what an endpoint holds with keep() follows its classes' new code; where it
cannot (a class's `__init__`, bases, `__slots__` or dataclass fields changed), the object keeps
running its old code and the deploy's reply names it (SyncResult.kept). Each such object is a
`kept-stale` warning at its endpoint's decorator, with a "Rebuild kept model" quick fix
(`slipstream.server.rebuildKept`), and a warning on the endpoint's run cards. A deploy whose
reply no longer names it, or a rebuild, clears it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lsprotocol import types

from . import workprogress
from .diagnostics import Reported, reported_diagnostics
from .paths import local_file, uri_to_path
from .protocol import (
    CMD_REBUILD_KEPT,
    DeployError,
    DeployKept,
    KeptStale,
    RebuildKeptArgs,
    RebuildKeptResult,
    RebuiltEndpoint,
    RunWarning,
)

if TYPE_CHECKING:
    from pygls.progress import Progress

    from .deploy import Deployer
    from .diagnostics import ReportedProblems
    from .documents import Documents
    from .positions import LineIndex
    from .routed import EditorRouting
    from .runtime import RuntimeManager

__all__ = ["REBUILD_TITLE", "KeptObjects", "kept_actions", "stale_message"]

log = logging.getLogger(__name__)

CODE: Final = "kept-stale"
REBUILD_TITLE = "Rebuild kept model"


def _short(cls: str) -> str:
    return cls.rsplit(".", 1)[-1]


def stale_message(s: KeptStale) -> str:
    """ "kept 'gpt' (model.GPT) still runs its old code: GPT.__init__ changed: ... Rebuild it
    to apply." (where in the kept value, when it is not the kept object itself)."""
    where = "" if s["path"] in ("", "(the kept object)") else f" at {s['path']}"
    return (
        f"kept {s['key']} ({s['cls']}{where}) still runs its old code: {s['why']}. "
        "Rebuild it to apply."
    )


def kept_actions(
    items: list[Reported], lines: LineIndex, rng: types.Range, uri: str
) -> list[types.CodeAction]:
    """The "Rebuild kept model" quick fix of each kept-stale warning on the range's lines."""
    out: list[types.CodeAction] = []
    done: set[str] = set()
    for item in items:
        row = item.line - 1
        if item.code != CODE or not rng.start.line <= row <= rng.end.line:
            continue
        diagnostics = [
            d
            for r, d in zip(items, reported_diagnostics(items, lines), strict=True)
            if r.code == CODE and r.endpoint == item.endpoint
        ]
        if item.endpoint in done:
            continue
        done.add(item.endpoint)
        out.append(
            types.CodeAction(
                title=f"{REBUILD_TITLE}: {item.endpoint}",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=diagnostics,
                is_preferred=True,
                command=types.Command(
                    title=REBUILD_TITLE,
                    command=CMD_REBUILD_KEPT,
                    arguments=[{"uri": uri, "endpoint": item.endpoint}],
                ),
            )
        )
    return out


def _stale_list(endpoint: str, raw: Any) -> list[KeptStale]:
    out: list[KeptStale] = []
    for s in raw if isinstance(raw, list) else []:
        if isinstance(s, dict):
            out.append(
                KeptStale(
                    endpoint=endpoint,
                    key=str(s.get("key", "")),
                    path=str(s.get("path", "")),
                    cls=str(s.get("cls", "")),
                    why=str(s.get("why", "")),
                )
            )
    return out


class KeptObjects:
    """The stale kept objects of each deployed project's endpoints, as diagnostics, run-card
    warnings and the rebuild command.

    documents: the endpoint indexes (the decorator's line); reported/republish: the warnings
    as diagnostics; runtime/routing: the runtime serving an endpoint (as Run finds it);
    deployer: the saved code deployed before a rebuild; project_root: a file's project folder;
    uri_for: a local file's URI as the client opened it; progress: the client's work-done
    progress, or None."""

    def __init__(
        self,
        documents: Documents,
        reported: ReportedProblems,
        republish: Callable[[set[Path]], Awaitable[None]],
        *,
        runtime: RuntimeManager,
        routing: EditorRouting,
        project_root: Callable[[Path], Path],
        uri_for: Callable[[Path], str],
        progress: Callable[[], Progress | None],
    ) -> None:
        self.documents = documents
        self.reported = reported
        self.republish = republish
        self.runtime = runtime
        self.routing = routing
        self.project_root = project_root
        self.uri_for = uri_for
        self.progress = progress
        self.deployer: Deployer | None = None  # set by the server (the deployer reports here)
        self._stale: dict[Path, dict[str, list[KeptStale]]] = {}
        self._unsure: dict[Path, set[str]] = {}  # workers still loading when the deploy answered
        self._where: dict[tuple[Path, str], tuple[str, int]] = {}  # endpoint -> (file, line)

    def stale(self, root: Path, endpoint: str | None = None) -> list[KeptStale]:
        by_endpoint = self._stale.get(root, {})
        if endpoint is not None:
            return list(by_endpoint.get(endpoint, []))
        return [s for items in by_endpoint.values() for s in items]

    # --- from deploys ---------------------------------------------------------------------
    async def deployed(self, root: Path, synced: Any) -> DeployKept | None:
        """A deploy's reply: its stale kept objects replace the project's (an unchanged
        generation reloaded nothing: they stay). What the deployResult says of them."""
        if synced.unchanged:
            return None
        for info in synced.endpoints or []:
            if isinstance(info, dict) and info.get("name") and info.get("file"):
                self._where[(root, info["name"])] = (str(info["file"]), int(info.get("line") or 0))
        kept: dict[str, dict[str, Any]] = synced.kept or {}
        self._stale[root] = {
            name: stale
            for name, k in kept.items()
            if (stale := _stale_list(name, (k or {}).get("stale")))
        }
        self._unsure[root] = {n for n, k in kept.items() if (k or {}).get("loading")}
        await self._publish(root)
        if not kept:
            return None
        return DeployKept(
            updated=sum(int((k or {}).get("updated") or 0) for k in kept.values()),
            stale=self.stale(root),
        )

    async def _publish(self, root: Path) -> None:
        items: list[Reported] = []
        for name, stale in sorted(self._stale.get(root, {}).items()):
            where = await self._locate(root, name)
            if where is None:
                log.info("%s: no local file for endpoint %s's kept-stale warning", root.name, name)
                continue
            path, line = where
            for s in stale:
                items.append(
                    Reported(
                        path,
                        line,
                        stale_message(s),
                        CODE,
                        str(root),
                        severity="warning",
                        endpoint=name,
                    )
                )
        changed = self.reported.replace(CODE, str(root), items)
        if changed:
            await self.republish(changed)

    async def _locate(self, root: Path, name: str) -> tuple[Path, int] | None:
        """(local file, one-based line of the decorator) of endpoint `name` of the project."""
        file, line = self._where.get((root, name), ("", 0))
        candidates: list[Path] = []
        local = local_file(file, [root]) if file else None
        if local is not None:
            candidates.append(local)
        for uri in self.documents.open_uris():
            path = uri_to_path(uri)
            if (
                path is not None
                and path.suffix == ".py"
                and path.resolve().is_relative_to(root)
                and path.resolve() not in candidates
            ):
                candidates.append(path.resolve())
        for path in candidates:
            try:
                index = await self.documents.get(self.uri_for(path))
            except Exception as exc:  # noqa: BLE001 - a file gone since: try the next one
                log.debug("no index of %s: %s", path, exc)
                continue
            ep = index.endpoint(name)
            if ep is not None:
                return path, ep.decorator.line + 1
        return (local, line or 1) if local is not None else None

    # --- on run cards -----------------------------------------------------------------------
    async def run_warnings(self, root: Path | None, endpoint: str) -> list[RunWarning]:
        """The run card's warning when the endpoint's kept objects run old code (asked of the
        runtime when the last deploy said so, or could not tell yet)."""
        if root is None:
            return []
        if self.stale(root, endpoint) or endpoint in self._unsure.get(root, set()):
            await self._refresh(root, endpoint)
        stale = self.stale(root, endpoint)
        if not stale:
            return []
        objects = "; ".join(stale_message(s).removesuffix(" Rebuild it to apply.") for s in stale)
        return [
            RunWarning(
                kind=CODE,
                message=f"{objects}. Rebuild the kept model to apply the saved code.",
                endpoint=endpoint,
                keys=sorted({s["key"] for s in stale}),
            )
        ]

    async def _refresh(self, root: Path, endpoint: str) -> None:
        """The runtime's word on the endpoint's stale kept objects (GET /v1/endpoints)."""
        from slipstream.sdk.config import project_key

        try:
            client = await self._client(root, endpoint)
            listing = await asyncio.to_thread(client.endpoints, project_key(root))
        except Exception as exc:  # noqa: BLE001 - what the deploy said stands
            log.debug("could not ask about %s's kept objects: %s", endpoint, exc)
            return
        mine = next((e for e in listing if e.get("name") == endpoint), None)
        if mine is None:
            return
        self._unsure.get(root, set()).discard(endpoint)
        await self._set(root, endpoint, _stale_list(endpoint, mine.get("stale")))

    async def _set(self, root: Path, endpoint: str, stale: list[KeptStale]) -> None:
        by_endpoint = self._stale.setdefault(root, {})
        if by_endpoint.get(endpoint, []) == stale:
            return
        if stale:
            by_endpoint[endpoint] = stale
        else:
            by_endpoint.pop(endpoint, None)
        await self._publish(root)

    async def _client(self, root: Path, endpoint: str) -> Any:
        """The client of the runtime serving the endpoint: the Run command's lookup."""
        if self.routing.entries(root) is not None:  # several runtimes (routed.py)
            client, _route = await asyncio.to_thread(self.routing.client_for, root, endpoint)
            return client
        return await self.runtime.ensure(root)

    # --- the rebuild command ------------------------------------------------------------------
    async def rebuild(self, args: RebuildKeptArgs) -> RebuildKeptResult:
        """Load the endpoint's kept objects again and re-run its setup() on each worker: those
        `keys`, else its stale ones, else all it keeps."""
        uri = args.get("uri")
        path = uri_to_path(uri) if uri else None
        if path is None:
            raise ValueError("rebuildKept needs {uri, endpoint?, keys?}")
        root = self.project_root(path)
        names = [args["endpoint"]] if args.get("endpoint") else []
        if not names:
            names = sorted({s["endpoint"] for s in self.stale(root)})
        if not names:
            assert uri is not None
            names = [ep.name for ep in (await self.documents.get(uri)).endpoints]
        if not names:
            raise ValueError(f"no endpoint in {path.name} to rebuild")
        token = await self._begin(f"Rebuilding the kept objects of {', '.join(names)}…")
        message = "Rebuild failed"
        try:
            if self.deployer is not None:  # the saved code, as Run does
                await self.deployer.ensure_deployed(root)
            rebuilt = [await self._rebuild_one(root, n, args.get("keys")) for n in names]
            message = "\n".join(_describe(r) for r in rebuilt)
        finally:
            self._end(token, message.splitlines()[0] if message else "")
        return RebuildKeptResult(
            ok=not any(r["errors"] for r in rebuilt), message=message, endpoints=rebuilt
        )

    async def _rebuild_one(self, root: Path, name: str, keys: list[str] | None) -> RebuiltEndpoint:
        from slipstream.sdk.config import project_key

        only_stale = not keys and bool(self.stale(root, name))
        try:
            client = await self._client(root, name)
            reply = await asyncio.to_thread(
                client.rebuild, name, project_key(root), keys or None, only_stale
            )
        except Exception as exc:  # the runtime refused (no such endpoint) or went away
            log.warning("rebuild of %s failed: %s", name, exc)
            return RebuiltEndpoint(
                endpoint=name,
                workers=0,
                released=[],
                modelLoads=0,
                rebuildS=0.0,
                stale=self.stale(root, name),
                errors=[DeployError(type=type(exc).__name__, message=str(exc))],
            )
        stale = _stale_list(name, reply.get("stale"))
        await self._set(root, name, stale)
        self._unsure.get(root, set()).discard(name)
        return RebuiltEndpoint(
            endpoint=name,
            workers=int(reply.get("workers") or 0),
            released=[str(k) for k in reply.get("released") or []],
            modelLoads=int(reply.get("model_loads") or 0),
            rebuildS=float(reply.get("rebuild_s") or 0.0),
            stale=stale,
            errors=[
                DeployError(type=str(e.get("type", "Error")), message=str(e.get("message", "")))
                for e in reply.get("errors") or []
                if isinstance(e, dict)
            ],
        )

    async def _begin(self, message: str) -> str | None:
        return await workprogress.begin(self.progress(), "rebuild", message)

    def _end(self, token: str | None, message: str) -> None:
        workprogress.end(self.progress(), token, message)


def _describe(r: RebuiltEndpoint) -> str:
    """One line (and one per failure or object still stale) for the notification."""
    name = r["endpoint"]
    if r["workers"]:
        released = ", ".join(r["released"]) or "nothing (no kept object matched)"
        lines = [
            f"{name}: {r['workers']} worker(s) loaded {released} again and re-ran setup() in "
            f"{r['rebuildS']:.2f} s"
        ]
    elif r["errors"] and not r["released"]:
        lines = []
    else:
        lines = [
            f"{name} has no running worker: its next call builds everything from the saved code"
        ]
    lines += [f"✗ {name}: {e.get('type')}: {e.get('message')}" for e in r["errors"]]
    lines += [f"⚠ {name}: still stale: {stale_message(s)}" for s in r["stale"]]
    return "\n".join(lines)
