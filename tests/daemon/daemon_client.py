"""A pytest-lsp client for the Slipstream daemon, started as a real subprocess.

It keeps custom notification payloads as plain dicts, records workspace/applyEdit requests
(and applies nothing), and answers window/showMessageRequest with the first action.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.protocol import default_converter
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

SERVER = [sys.executable, "-m", "slipstream_daemon"]


def _plain_converter():
    """pygls turns unknown payloads into namedtuples; keep them as the dicts they were."""
    converter = default_converter()

    def keep(obj: dict[str, Any], cls: type) -> Any:
        return cls(**obj)

    for cls in (JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage):
        converter.register_structure_hook(cls, keep)
    return converter


class Client(LanguageClient):
    """The pytest-lsp client plus what a Slipstream test needs to see."""

    def __init__(self) -> None:
        super().__init__(converter_factory=_plain_converter)
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.applied_edits: list[types.ApplyWorkspaceEditParams] = []
        self.message_requests: list[types.ShowMessageRequestParams] = []
        self.versions: dict[str, int] = {}
        self.diagnostic_versions: dict[str, int | None] = {}

    def notes_of(self, method: str) -> list[dict[str, Any]]:
        return self.notes.setdefault(method, [])

    # --- documents ---------------------------------------------------------------------
    def open(self, path: Path, text: str | None = None) -> str:
        uri = path.as_uri()
        self.versions[uri] = 1
        self.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri,
                    language_id="python",
                    version=1,
                    text=path.read_text() if text is None else text,
                )
            )
        )
        return uri

    def replace(self, uri: str, text: str) -> int:
        self.versions[uri] += 1
        self.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
        return self.versions[uri]

    async def diagnostics_for(
        self, uri: str, version: int | None = None, timeout: float = 30
    ) -> list[types.Diagnostic]:
        """Wait for diagnostics of `uri` (published for `version`, when given)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            current = self.diagnostics.get(uri)
            if current is not None and (
                version is None or self.diagnostic_versions.get(uri) == version
            ):
                return list(current)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no diagnostics for {uri} at version {version}")
            await asyncio.sleep(0.02)

    async def command(self, name: str, arg: dict[str, Any] | None = None) -> Any:
        return await self.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=[arg or {}])
        )

    async def next_note(
        self, method: str, timeout: float = 60, since: int | None = None, **match: Any
    ) -> dict[str, Any]:
        """The next notification of `method` whose fields equal `match`.

        Counts from `since` (a len(notes_of(method)) taken before causing it), else from now:
        arm the wait before triggering the notification.
        """
        seen = len(self.notes_of(method)) if since is None else since
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for note in self.notes_of(method)[seen:]:
                if all(note.get(k) == v for k, v in match.items()):
                    return note
            seen = len(self.notes_of(method))
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no {method} matching {match}")
            await asyncio.sleep(0.02)


def make_client() -> Client:
    client = Client()
    register_lsp_features(
        client,
        {
            k: v
            for k, v in DEFAULT_CLIENT_FEATURES.items()
            if k != types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS
        },
    )

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def publish(c: Client, params: types.PublishDiagnosticsParams) -> None:
        c.diagnostics[params.uri] = params.diagnostics
        c.diagnostic_versions[params.uri] = params.version

    for method in (
        "slipstream/runStarted",
        "slipstream/runLog",
        "slipstream/runResult",
        "slipstream/deployResult",
        "slipstream/runtimeStatus",
    ):

        def record(c: Client, params: Any, method: str = method) -> None:
            c.notes_of(method).append(params)

        client.feature(method)(record)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(
        c: Client, params: types.ApplyWorkspaceEditParams
    ) -> types.ApplyWorkspaceEditResult:
        c.applied_edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
    def message_request(
        c: Client, params: types.ShowMessageRequestParams
    ) -> types.MessageActionItem | None:
        c.message_requests.append(params)
        return params.actions[0] if params.actions else None

    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def lens_refresh(c: Client, params: None) -> None:
        return None

    return client


async def start_daemon(
    root: Path, env: dict[str, str] | None = None, command: list[str] | None = None
) -> Client:
    """Start the daemon (`python -m slipstream_daemon` unless `command` says otherwise)."""
    client = make_client()
    full_env = {**os.environ, **(env or {})}
    if env is None or "SLIPSTREAM_RUNTIME_URL" not in env:
        full_env.pop("SLIPSTREAM_RUNTIME_URL", None)
    full_env.setdefault("SLIPSTREAM_CACHE", str(root / ".cache"))
    await client.start_io(*(command or SERVER), env=full_env)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        )
    )
    return client
