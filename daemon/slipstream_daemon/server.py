"""The Slipstream language server: each LSP method registered once, handed to its module.

    python -m slipstream_daemon            # stdio (what editors start)
    python -m slipstream_daemon --tcp 2087 # for debugging with a TCP client

`slipstream daemon [--tcp PORT]` calls `main(argv)`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from slipstream.sdk import envvars

from . import __version__, protocol
from .actions import code_actions, findings
from .costs import CostBook
from .debugging import Debugging
from .deploy import Deployer
from .diagnostics import ReportedProblems, reported_diagnostics, to_diagnostics
from .documents import Documents
from .facts import facts_for
from .hovers import hover
from .kept import KeptObjects, kept_actions
from .lenses import code_lenses
from .paths import path_to_uri, project_root, uri_to_path
from .routed import EditorRouting, known_endpoints, routing_actions, routing_findings, where_for
from .runs import Runner
from .runtime import RuntimeManager
from .swap import model_alternatives, swap_edits

__all__ = ["SlipstreamServer", "create_server", "main"]

log = logging.getLogger("slipstream_daemon")

_DIAGNOSE_DELAY_S = 0.15


class SlipstreamServer(LanguageServer):
    """pygls server plus the daemon's state: documents, costs, runtime, deploys and runs."""

    def __init__(self) -> None:
        super().__init__(
            "slipstream-daemon",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.costs = CostBook()
        self.reported = ReportedProblems()
        self.documents = Documents(lambda: self.workspace)
        self.runtime = RuntimeManager(self._send_runtime_status, lambda: self.costs.session_usd)
        self.routing = (
            EditorRouting()
        )  # several runtimes: [runtimes] in slipstream.toml (routed.py)
        self.kept = KeptObjects(
            self.documents,
            self.reported,
            self.republish,
            runtime=self.runtime,
            routing=self.routing,
            project_root=self.project_root,
            uri_for=self.uri_for,
            progress=self._progress,
        )
        self.deployer = Deployer(
            self.runtime,
            self.reported,
            self.republish,
            routing=self.routing,
            endpoints=lambda root: known_endpoints(self.documents, root),
            notify=self.protocol.notify,
            log_message=self.window_log_message,
            progress=self._progress,
            kept=self.kept,
        )
        self.kept.deployer = self.deployer
        self.runtime.projects = self._deployed_projects
        self.runtime.on_change.append(self.deployer.forget_runtime)
        self.runs = Runner(
            self.documents,
            self.runtime,
            self.deployer,
            routing=self.routing,
            reported=self.reported,
            republish=self.republish,
            costs=self.costs,
            notify=self.protocol.notify,
            project_root=self.project_root,
            where_for=self.where_for,
            ran=self._ran,
            kept=self.kept,
        )
        self.debugging = Debugging(
            self.documents,
            self.runtime,
            self.deployer,
            self.runs,
            costs=self.costs,
            notify=self.protocol.notify,
            project_root=self.project_root,
            ran=self._ran,
        )
        self._diagnose_tasks: dict[str, asyncio.Task[None]] = {}

    # --- helpers the feature modules share ---------------------------------------------
    @staticmethod
    @lru_cache(maxsize=256)
    def _root_of_dir(folder: Path) -> Path:
        return project_root(folder / "__file__")

    def _deployed_projects(self) -> set[str]:
        """The keys the runtime keeps this editor's deployed projects under."""
        from slipstream.sdk.config import project_key

        return {project_key(root) for root in self.deployer.deployed}

    def project_root(self, path: Path) -> Path:
        return self._root_of_dir(path.resolve().parent)

    def roots_for(self, uri: str) -> list[Path]:
        path = uri_to_path(uri)
        if path is None:
            return []
        root = self.project_root(path)
        folder = path.resolve().parent
        return [root] if folder == root else [root, folder]

    def uri_for(self, path: Path) -> str:
        """The URI the client opened `path` with, else one made from the path."""
        resolved = path.resolve()
        for uri in list(self.workspace.text_documents):
            local = uri_to_path(uri)
            if local is not None and local.resolve() == resolved:
                return uri
        return path_to_uri(resolved)

    def _workspace_root(self) -> Path | None:
        root = self.workspace.root_path
        return self.project_root(Path(root) / "__file__") if root else None

    async def routing_changed(self) -> None:
        """slipstream.toml saved: lenses, diagnostics and the status bar follow its [runtimes]."""
        for uri in list(self.workspace.text_documents):
            self.diagnose_soon(uri, 0)
        await self.refresh_lenses()
        self.notify_runtime_status()

    def where_for(self, uri: str) -> Any:
        """Endpoint -> where it runs, for a project with [runtimes]; else None (routed.py)."""
        path = uri_to_path(uri)
        return where_for(self.routing, self.project_root(path)) if path is not None else None

    def _send_runtime_status(self, status: protocol.RuntimeStatus) -> None:
        root = self.routing.last_root
        if (
            root is not None and self.routing.entries(root) is not None
        ):  # one entry per runtime for the status bar
            status = protocol.RuntimeStatus(
                **status, runtimes=self.routing.status(root, self.costs)
            )
        self.protocol.notify(protocol.NOTIFY_RUNTIME_STATUS, status)

    def notify_runtime_status(self) -> None:
        self._send_runtime_status(self.runtime.status())

    def _progress(self) -> Any:
        """The client's work-done progress, when it supports one (deploys report through it)."""
        window = self.client_capabilities.window
        return self.work_done_progress if window is not None and window.work_done_progress else None

    async def _ran(self) -> None:
        """A run ended: the lenses show its cost, the status bar the session's spend."""
        await self.refresh_lenses()
        self.notify_runtime_status()

    async def refresh_lenses(self) -> None:
        workspace = self.client_capabilities.workspace
        code_lens = workspace.code_lens if workspace else None
        if code_lens is not None and code_lens.refresh_support:
            try:
                await asyncio.wait_for(self.workspace_code_lens_refresh_async(None), 5)
            except Exception as exc:
                log.debug("codeLens refresh failed: %s", exc)

    # --- diagnostics ---------------------------------------------------------------------
    async def publish(self, uri: str) -> None:
        path = uri_to_path(uri)
        is_open = uri in self.workspace.text_documents
        diagnostics: list[types.Diagnostic] = []
        version = None
        index = None
        if is_open or (path is not None and path.is_file()):
            index = await self.documents.get(uri)
            version = index.version
            lines = self.documents.lines(index)
            if is_open:
                found = await asyncio.to_thread(findings, index, self.roots_for(uri))
                diagnostics += to_diagnostics(found, lines)
                diagnostics += to_diagnostics(routing_findings(index, self.where_for(uri)), lines)
            if path is not None:
                diagnostics += reported_diagnostics(self.reported.for_path(path.resolve()), lines)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )

    async def republish(self, paths: set[Path]) -> None:
        for path in paths:
            await self.publish(self.uri_for(path))

    def diagnose_soon(self, uri: str, delay: float = _DIAGNOSE_DELAY_S) -> None:
        old = self._diagnose_tasks.pop(uri, None)
        if old is not None:
            old.cancel()

        async def later() -> None:
            await asyncio.sleep(delay)
            try:
                await self.publish(uri)
            except Exception:
                log.exception("diagnostics for %s failed", uri)

        task = asyncio.ensure_future(later())
        self._diagnose_tasks[uri] = task
        task.add_done_callback(
            lambda t: self._diagnose_tasks.get(uri) is t and self._diagnose_tasks.pop(uri)
        )

    async def close(self) -> None:
        await self.runs.close()
        await self.debugging.close()
        await self.deployer.close()
        await self.runtime.close()
        await asyncio.to_thread(self.routing.close)


def _argument(args: tuple[Any, ...]) -> dict[str, Any]:
    """Commands take one argument object."""
    if not args or args[0] is None:
        return {}
    value = args[0]
    if isinstance(value, dict):
        return value
    if hasattr(value, "_asdict"):
        return dict(value._asdict())
    raise ValueError("Slipstream commands take one argument object, e.g. {uri, endpoint}")


def create_server() -> SlipstreamServer:
    server = SlipstreamServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: SlipstreamServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.diagnose_soon(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SlipstreamServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.diagnose_soon(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SlipstreamServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.forget(params.text_document.uri)
        ls.diagnose_soon(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    async def did_save(ls: SlipstreamServer, params: types.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        path = uri_to_path(uri)
        if path is not None and path.name in ("slipstream.toml", "pyproject.toml"):
            ls._root_of_dir.cache_clear()  # a new or moved project root (or src/ layout)
            await ls.routing_changed()
        if path is None or path.suffix != ".py":
            return
        root = ls.project_root(path)
        ls.deployer.saved(path)
        if ls.runtime.client is None and root not in ls.deployer.deployed:
            # Nothing running yet: only a file with endpoints is worth starting a runtime for.
            index = await ls.documents.get(uri)
            if not index.endpoints:
                return
        ls.deployer.request(root, "save")

    @server.feature(types.TEXT_DOCUMENT_CODE_LENS)
    async def code_lens(ls: SlipstreamServer, params: types.CodeLensParams) -> list[types.CodeLens]:
        uri = params.text_document.uri
        index = await ls.documents.get(uri)
        return code_lenses(index, ls.documents.lines(index), ls.costs, uri, ls.where_for(uri))

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def on_hover(ls: SlipstreamServer, params: types.HoverParams) -> types.Hover | None:
        index = await ls.documents.get(params.text_document.uri)
        return hover(
            index,
            ls.documents.lines(index),
            params.position,
            ls.costs,
            ls.where_for(uri=params.text_document.uri),
        )

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.Empty]
        ),
    )
    async def code_action(
        ls: SlipstreamServer, params: types.CodeActionParams
    ) -> list[types.CodeAction]:
        uri = params.text_document.uri
        index = await ls.documents.get(uri)
        roots = ls.roots_for(uri)
        lines = ls.documents.lines(index)
        actions = await asyncio.to_thread(code_actions, index, lines, params.range, uri, roots)
        path = uri_to_path(uri)
        if path is not None:  # "Rebuild kept model" on a kept-stale warning
            actions += kept_actions(ls.reported.for_path(path.resolve()), lines, params.range, uri)
        return actions + routing_actions(index, lines, params.range, uri, ls.where_for(uri))

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: SlipstreamServer, params: None) -> None:
        await ls.close()

    # --- commands --------------------------------------------------------------------------
    @server.command(protocol.CMD_RUN)
    async def run(ls: SlipstreamServer, *args: Any) -> protocol.RunStartedReply:
        run_id = await ls.runs.start(protocol.RunArgs(**_argument(args)))  # type: ignore[typeddict-item]
        return protocol.RunStartedReply(runId=run_id)

    @server.command(protocol.CMD_DEBUG)
    async def debug(ls: SlipstreamServer, *args: Any) -> protocol.DebugStartedReply:
        return await ls.debugging.start(_argument(args))  # type: ignore[return-value]

    async def _endpoint(ls: SlipstreamServer, arg: dict[str, Any]) -> Any:
        uri, name = arg.get("uri"), arg.get("endpoint")
        if not uri or not name:
            raise ValueError("this command needs {uri, endpoint}")
        index = await ls.documents.get(uri)
        ep = index.endpoint(name)
        if ep is None:
            raise ValueError(f"no endpoint named {name!r} in {uri}")
        return index, ep

    @server.command(protocol.CMD_REBUILD_KEPT)
    async def rebuild_kept(ls: SlipstreamServer, *args: Any) -> protocol.RebuildKeptResult:
        return await ls.kept.rebuild(protocol.RebuildKeptArgs(**_argument(args)))  # type: ignore[typeddict-item]

    @server.command(protocol.CMD_MODEL_ALTERNATIVES)
    async def alternatives(ls: SlipstreamServer, *args: Any) -> protocol.ModelAlternativesResult:
        arg = _argument(args)
        _, ep = await _endpoint(ls, arg)
        return await asyncio.to_thread(model_alternatives, ep, uri_to_path(arg["uri"]))

    async def _apply(ls: SlipstreamServer, uri: str, index: Any, ep: Any, model_id: str) -> bool:
        old, edits = await asyncio.to_thread(
            swap_edits, index, ep, model_id, ls.documents.lines(index)
        )
        if not edits:
            return False
        reply = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(
                edit=types.WorkspaceEdit(changes={uri: edits}),
                label=f"Swap model {old} → {model_id}",
            )
        )
        return bool(reply and reply.applied)

    @server.command(protocol.CMD_APPLY_MODEL)
    async def apply_model(ls: SlipstreamServer, *args: Any) -> protocol.ApplyModelResult:
        arg = _argument(args)
        index, ep = await _endpoint(ls, arg)
        model_id = arg.get("modelId")
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("applyModel needs {uri, endpoint, modelId}")
        return protocol.ApplyModelResult(applied=await _apply(ls, arg["uri"], index, ep, model_id))

    @server.command(protocol.CMD_SWAP_MODEL)
    async def swap_model(ls: SlipstreamServer, *args: Any) -> protocol.ApplyModelResult:
        arg = _argument(args)
        index, ep = await _endpoint(ls, arg)
        options = await asyncio.to_thread(model_alternatives, ep, uri_to_path(arg["uri"]))
        items = [i for i in options["items"] if i["id"] != options["current"]]
        if not items:
            ls.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Info,
                    message=f"No alternatives known for {options['current'] or 'this model'}.",
                )
            )
            return protocol.ApplyModelResult(applied=False)
        titles = {f"{i['id']} ({i['description']})": i["id"] for i in items}
        choice = await ls.window_show_message_request_async(
            types.ShowMessageRequestParams(
                type=types.MessageType.Info,
                message=f"Swap {options['current']} for:",
                actions=[types.MessageActionItem(title=t) for t in titles],
            )
        )
        if choice is None or choice.title not in titles:
            return protocol.ApplyModelResult(applied=False)
        applied = await _apply(ls, arg["uri"], index, ep, titles[choice.title])
        return protocol.ApplyModelResult(applied=applied)

    @server.command(protocol.CMD_SELECT_RUNTIME)
    async def select_runtime(ls: SlipstreamServer, *args: Any) -> protocol.RuntimeStatus:
        arg = _argument(args)
        return await ls.runtime.select(arg.get("url"), arg.get("token"), bool(arg.get("embedded")))

    @server.command(protocol.CMD_RUNTIME_STATUS)
    async def runtime_status(ls: SlipstreamServer, *args: Any) -> protocol.RuntimeStatus:
        uri = _argument(args).get(
            "uri"
        )  # a project's file or slipstream.toml (its runtimes changed)
        path = uri_to_path(uri) if uri else None
        root = (
            ls.project_root(path)
            if path is not None
            else ls.routing.last_root or ls._workspace_root()
        )
        if root is not None and ls.routing.entries(root) is not None:  # several runtimes: ask each
            ls.routing.last_root = root
            if await asyncio.to_thread(ls.routing.refresh, root) or path is not None:
                await ls.routing_changed()  # lenses and diagnostics follow what the runtimes have
            status = ls.runtime.status()
            return protocol.RuntimeStatus(**status, runtimes=ls.routing.status(root, ls.costs))
        if path is not None:  # its [runtimes] went away (Disconnect): lenses and diagnostics follow
            await ls.routing_changed()
        if ls.runtime.client is None:
            return ls.runtime.status()
        return await ls.runtime.refresh()

    @server.command(protocol.CMD_DEPLOY)
    async def deploy(ls: SlipstreamServer, *args: Any) -> protocol.DeployResult:
        arg = _argument(args)
        path = uri_to_path(arg["uri"]) if arg.get("uri") else None
        if path is not None:
            root = ls.project_root(path)
        elif ls.workspace.root_path:
            root = ls.project_root(Path(ls.workspace.root_path) / "__file__")
        else:
            raise ValueError("deploy needs {uri} when no workspace folder is open")
        return await ls.deployer.deploy(root, "command")

    @server.command(protocol.CMD_LIST_ENDPOINTS)
    async def list_endpoints(ls: SlipstreamServer, *args: Any) -> protocol.ListEndpointsResult:
        arg = _argument(args)
        uris = (
            [arg["uri"]]
            if arg.get("uri")
            else [uri for uri in ls.workspace.text_documents if uri.endswith((".py", ".pyw"))]
        )
        items: list[protocol.EndpointListItem] = []
        for uri in uris:
            index = await ls.documents.get(uri)
            for ep in index.endpoints:
                items.append(
                    protocol.EndpointListItem(
                        uri=uri,
                        name=ep.name,
                        gpu=facts_for(ep).gpu_label,
                        line=ep.decorator.line,
                        methods=[m.name for m in ep.methods],
                    )
                )
        return protocol.ListEndpointsResult(endpoints=items)

    return server


# --- entry point -----------------------------------------------------------------------------


def _claim_stdout() -> BinaryIO:
    """Keep the real stdout for the protocol; point fd 1 and sys.stdout at stderr.

    Anything else that writes to stdout (a stray print, a library, a runtime worker process
    that inherits fd 1) would corrupt the LSP stream.
    """
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("slipstream_daemon").setLevel(level.upper())
    logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message at INFO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="slipstream daemon", description="The Slipstream language server (stdio by default)."
    )
    parser.add_argument("--tcp", type=int, metavar="PORT", help="listen on a TCP port instead")
    parser.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    # language clients add --stdio when their transport is stdio; it is the default here
    parser.add_argument("--stdio", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-level",
        default=os.environ.get(envvars.LOG_LEVEL, "INFO"),
        help="log level for stderr (default INFO, or $SLIPSTREAM_LOG_LEVEL)",
    )
    args, _unknown = parser.parse_known_args(argv)  # e.g. --clientProcessId from some clients
    _configure_logging(args.log_level)
    server = create_server()
    if args.tcp is not None:
        log.info("listening on %s:%d", args.host, args.tcp)
        server.start_tcp(args.host, args.tcp)
    else:
        out = _claim_stdout()
        server.start_io(sys.stdin.buffer, out)
    return 0
