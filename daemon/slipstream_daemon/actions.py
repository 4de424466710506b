"""Code actions: quick fixes for diagnostics, plus Run and Swap model for editors without lenses."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from . import protocol
from .diagnostics import Finding, endpoint_findings, fix_edits, to_diagnostic
from .facts import facts_for
from .finder import DocumentIndex
from .lenses import run_title
from .positions import LineIndex, Span

__all__ = ["code_actions", "findings"]


def findings(index: DocumentIndex, roots: list[Path]) -> list[Finding]:
    """The document's findings, computed once per version."""
    cached = index.cache.get("findings")
    if cached is None:
        cached = index.cache["findings"] = endpoint_findings(index, roots)
    return cached


def _overlaps(a: Span, b: Span) -> bool:
    return (a.line, a.col) <= (b.end_line, b.end_col) and (b.line, b.col) <= (a.end_line, a.end_col)


def code_actions(
    index: DocumentIndex,
    lines: LineIndex,
    rng: types.Range,
    uri: str,
    roots: list[Path],
) -> list[types.CodeAction]:
    start_col = lines.column(rng.start.line, rng.start.character)
    end_col = lines.column(rng.end.line, rng.end.character)
    wanted = Span(rng.start.line, start_col, rng.end.line, end_col)
    out: list[types.CodeAction] = []
    for finding in findings(index, roots):
        if not finding.fixes or not _overlaps(finding.span, wanted):
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
    ep = index.endpoint_at(rng.start.line)
    if ep is not None:
        label = facts_for(ep).gpu_label
        runs: list[tuple[str | None, str]] = [
            (m.name, run_title(label, m.name)) for m in ep.methods
        ]
        if ep.kind == "function":
            runs = [(None, run_title(label))]
        for method, title in runs:
            args: dict[str, str] = {"uri": uri, "endpoint": ep.name}
            if method:
                args["method"] = method
            out.append(
                types.CodeAction(
                    title=f"{title}: {ep.name}",
                    kind=types.CodeActionKind.Empty,
                    command=types.Command(title=title, command=protocol.CMD_RUN, arguments=[args]),
                )
            )
        if ep.models:
            args = {"uri": uri, "endpoint": ep.name}
            out.append(
                types.CodeAction(
                    title=f"⇄ Swap model: {ep.models[0].model_id}",
                    kind=types.CodeActionKind.Empty,
                    command=types.Command(
                        title="⇄ Swap model", command=protocol.CMD_SWAP_MODEL, arguments=[args]
                    ),
                )
            )
    return out
