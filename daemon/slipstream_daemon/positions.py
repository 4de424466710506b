"""Positions: the daemon's (line, code-point column) spans and their LSP form.

libcst and Python count columns in code points; LSP clients count in the position encoding
agreed at initialize (UTF-16 unless the client offers otherwise). `Span` is the internal
form; `LineIndex` converts to and from the client's units for one version of a document.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from lsprotocol import types

__all__ = ["LineIndex", "Span", "split_lines"]

_NEWLINE = re.compile(r"\r\n|\r|\n")
_UTF8 = types.PositionEncodingKind.Utf8.value
_UTF16 = types.PositionEncodingKind.Utf16.value
_UTF32 = types.PositionEncodingKind.Utf32.value


def _has_other_breaks(source: str) -> bool:
    """Whether str.splitlines() would also break somewhere LSP and Python's tokenizer do not."""
    if any(ch in source for ch in "\x0b\x0c\x1c\x1d\x1e"):
        return True
    return not source.isascii() and any(ch in source for ch in "\x85\u2028\u2029")


def split_lines(source: str) -> list[str]:
    """Split on the LSP line terminators (\\n, \\r\\n, \\r), keeping them on each line."""
    if not _has_other_breaks(source):
        return source.splitlines(keepends=True)  # same result, ten times faster
    lines: list[str] = []
    start = 0
    for match in _NEWLINE.finditer(source):
        lines.append(source[start : match.end()])
        start = match.end()
    if start < len(source):
        lines.append(source[start:])
    return lines


@dataclass(frozen=True, order=True)
class Span:
    """A zero-based, end-exclusive range in code points."""

    line: int
    col: int
    end_line: int
    end_col: int

    def shifted(self, lines: int) -> Span:
        if not lines:
            return self
        return Span(self.line + lines, self.col, self.end_line + lines, self.end_col)

    def contains(self, line: int, col: int) -> bool:
        return (self.line, self.col) <= (line, col) <= (self.end_line, self.end_col)


class LineIndex:
    """Converts spans of one document version to the client's position encoding."""

    def __init__(self, lines: list[str], encoding: str = _UTF16):
        self.lines = lines
        # lsprotocol's kinds are str enums whose str() is their name, not their value
        self.encoding = encoding.value if isinstance(encoding, enum.Enum) else str(encoding)

    def _units(self, text: str) -> int:
        if self.encoding == _UTF32:
            return len(text)
        if self.encoding == _UTF8:
            return len(text.encode("utf-8", "surrogatepass"))
        if text.isascii():
            return len(text)
        return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)

    def _line_text(self, line: int) -> str:
        if 0 <= line < len(self.lines):
            return self.lines[line].rstrip("\r\n")
        return ""

    def position(self, line: int, col: int) -> types.Position:
        text = self._line_text(line)
        return types.Position(line=line, character=self._units(text[:col]))

    def range(self, span: Span) -> types.Range:
        return types.Range(
            start=self.position(span.line, span.col),
            end=self.position(span.end_line, span.end_col),
        )

    def column(self, line: int, character: int) -> int:
        """The code-point column of a client position."""
        text = self._line_text(line)
        if self.encoding == _UTF32 or text.isascii():
            return min(character, len(text))
        units = 0
        for index, ch in enumerate(text):
            if units >= character:
                return index
            if self.encoding == _UTF8:
                units += len(ch.encode("utf-8", "surrogatepass"))
            else:
                units += 2 if ord(ch) > 0xFFFF else 1
        return len(text)
