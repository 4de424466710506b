"""The endpoint index of each document, computed once per version, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from lsprotocol import types

from .facts import is_model_id
from .finder import DocumentIndex, index_document
from .positions import LineIndex

if TYPE_CHECKING:
    from pygls.workspace import Workspace

__all__ = ["Documents"]


class Documents:
    """workspace: the language server's workspace (open buffers, else files on disk); a function,
    since the server has one only once the client initialized it (RuntimeError before)."""

    def __init__(self, workspace: Callable[[], Workspace]) -> None:
        self.workspace = workspace
        self._latest: dict[str, DocumentIndex] = {}
        self._pending: dict[tuple[str, int | None], asyncio.Future[DocumentIndex]] = {}

    def encoding(self) -> str:
        try:
            chosen = self.workspace().position_encoding
        except RuntimeError:  # not initialized
            chosen = None
        return chosen or types.PositionEncodingKind.Utf16

    def lines(self, index: DocumentIndex) -> LineIndex:
        cached = index.cache.get("lines")
        if cached is None:
            cached = index.cache["lines"] = LineIndex(index.lines, self.encoding())
        return cached

    async def get(self, uri: str) -> DocumentIndex:
        """The index of the document's current version (an open buffer, else the file)."""
        doc = self.workspace().get_text_document(uri)
        version = doc.version
        latest = self._latest.get(uri)
        if latest is not None and version is not None and latest.version == version:
            return latest
        key = (uri, version)
        pending = self._pending.get(key)
        if pending is None or version is None:
            try:
                source = doc.source
            except OSError:
                source = ""
            pending = asyncio.ensure_future(
                asyncio.to_thread(index_document, uri, version, source, is_model_id)
            )
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        index = await pending
        if version is not None:
            current = self._latest.get(uri)
            if current is None or current.version is None or (current.version or 0) <= version:
                self._latest[uri] = index
        return index

    def open_uris(self) -> list[str]:
        """The documents the editor has open."""
        return list(self.workspace().text_documents)

    def forget(self, uri: str) -> None:
        self._latest.pop(uri, None)
