"""Code lenses over each endpoint: Run, price (with the last measured call), Swap model.

Function endpoints get all three over the decorator. Class endpoints get price and swap over
the decorator and a Run lens over each public method (what a call runs).
"""

from __future__ import annotations

from typing import Any

from lsprotocol import types

from . import protocol
from .costs import CostBook, per_second
from .facts import display_gpu, facts_for
from .finder import DocumentIndex, Endpoint
from .positions import LineIndex, Span

__all__ = ["code_lenses", "run_title", "DEBUG_TITLE"]

DEBUG_TITLE = "⚙ Debug"  # next to each Run lens: the same call, under the editor's debugger


def run_title(label: str, method: str | None = None, where: Any = None) -> str:
    """ "▶ Run on H100"; with several runtimes ([runtimes]), "▶ Run on H100 · gpu-box"."""
    what = f"▶ Run {method}" if method else "▶ Run"
    title = f"{what} (CPU)" if label == "CPU" else f"{what} on {display_gpu(label)}"
    if where is not None:
        title += f" · {where.runtime}" if where.runtime else " · no runtime has it"
    return title


def _line_range(lines: LineIndex, span: Span) -> types.Range:
    return lines.range(Span(span.line, span.col, span.line, span.col))


def _lens(
    rng: types.Range, title: str, command: str = "", args: dict | None = None
) -> types.CodeLens:
    return types.CodeLens(
        range=rng,
        command=types.Command(title=title, command=command, arguments=[args] if args else None),
    )


def _price_title(ep: Endpoint, book: CostBook) -> str | None:
    facts = facts_for(ep)
    measured = book.get(ep.name)
    price = facts.price_per_second
    parts: list[str] = []
    if price is not None and not facts.is_cpu:
        parts.append(f"{per_second(price)}/s")
    if measured is not None:
        parts.append(measured.summary())
    return " · ".join(parts) or None


def code_lenses(
    index: DocumentIndex, lines: LineIndex, book: CostBook, uri: str, where: Any = None
) -> list[types.CodeLens]:
    """where: endpoint -> routed.Where when the project has several runtimes (routed.where_for)."""
    out: list[types.CodeLens] = []
    for ep in index.endpoints:
        facts = facts_for(ep)
        at = where(ep) if where is not None else None
        here = _line_range(lines, ep.decorator)
        if ep.kind == "function":
            out.append(
                _lens(
                    here,
                    run_title(facts.gpu_label, where=at),
                    protocol.CMD_RUN,
                    {"uri": uri, "endpoint": ep.name},
                )
            )
            out.append(
                _lens(here, DEBUG_TITLE, protocol.CMD_DEBUG, {"uri": uri, "endpoint": ep.name})
            )
        price = _price_title(ep, book)
        if price:
            out.append(_lens(here, price))
        if ep.models:
            out.append(
                _lens(
                    here, "⇄ Swap model", protocol.CMD_SWAP_MODEL, {"uri": uri, "endpoint": ep.name}
                )
            )
        for method in ep.methods:
            out.append(
                _lens(
                    _line_range(lines, method.span),
                    run_title(facts.gpu_label, method.name, at),
                    protocol.CMD_RUN,
                    {"uri": uri, "endpoint": ep.name, "method": method.name},
                )
            )
            out.append(
                _lens(
                    _line_range(lines, method.span),
                    DEBUG_TITLE,
                    protocol.CMD_DEBUG,
                    {"uri": uri, "endpoint": ep.name, "method": method.name},
                )
            )
    return out
