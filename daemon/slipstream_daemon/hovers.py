"""Hover on an endpoint's decorator or its gpu value: memory, prices, measured cost, cheaper fits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from .costs import CostBook, duration, money, per_second
from .facts import EndpointFacts, display_gpu, facts_for
from .finder import DocumentIndex, Endpoint
from .positions import LineIndex

if TYPE_CHECKING:
    from slipstream.spec.catalog import GPUChoice

__all__ = ["hover"]


def _target(index: DocumentIndex, line: int, col: int) -> Endpoint | None:
    for ep in index.endpoints:
        if ep.decorator.contains(line, col):
            return ep
        gpu = ep.args.get("gpu")
        if (
            gpu is not None
            and gpu.literal_span is not None
            and gpu.literal_span.contains(line, col)
        ):
            return ep
    return None


def _price_rows(choice: GPUChoice) -> list[str]:
    gpu, n = choice.gpu, choice.count
    rows = ["| | per second | per hour |", "|---|---:|---:|"]
    for title, price in (
        ("RunPod flex", gpu.runpod_flex),
        ("RunPod active", gpu.runpod_active),
        ("Modal", gpu.modal),
    ):
        if price is None:
            rows.append(f"| {title} | — | — |")
        else:
            rows.append(f"| {title} | {per_second(price * n)} | {money(price * n * 3600)} |")
    return rows


def _cheaper(facts: EndpointFacts, choice: GPUChoice) -> str | None:
    need = facts.model_vram_gb
    if need is None:
        return None
    from slipstream.spec.catalog import catalog

    limit = choice.price_per_second("flex")
    cheaper = [g for g in catalog().fitting(need) if g.price_per_second("flex") < limit]
    if not cheaper:
        return f"No cheaper GPU fits ~{need:.1f} GB."
    tiers: dict[tuple[float, float], list[str]] = {}
    for g in cheaper:  # GPUs with the same memory and price read as one choice
        tiers.setdefault((g.price_per_second("flex"), g.vram_gb), []).append(g.name)
    shown = ", ".join(
        f"{'/'.join(names)} ({vram:g} GB, {per_second(price)}/s)"
        for (price, vram), names in list(tiers.items())[:4]
    )
    return f"Cheaper GPUs that fit ~{need:.1f} GB: {shown}"


def hover_markdown(facts: EndpointFacts, book: CostBook) -> str:
    ep = facts.endpoint
    lines: list[str] = [f"**@endpoint `{ep.name}`** · {display_gpu(facts.gpu_label)}"]
    choice = facts.primary
    measured = book.get(ep.name)
    if facts.request is None:
        lines.append("")
        lines.append("The GPU is not one the catalog knows (see the diagnostic).")
    elif choice is None:
        lines.append("")
        lines.append("Runs on the CPU: no GPU cost.")
    else:
        vram = f"{choice.vram_gb:g} GB VRAM"
        if choice.count > 1:
            vram += f" ({choice.count} × {choice.gpu.vram_gb:g} GB)"
        lines[0] += f" · {vram}"
        lines.append("")
        lines.extend(_price_rows(choice))
        fallbacks = facts.request.choices[1:] if facts.request else ()
        if fallbacks:
            lines.append("")
            lines.append(
                "Fallbacks: "
                + ", ".join(
                    f"{display_gpu(c.label)} ({c.vram_gb:g} GB, {per_second(c.price_per_second())}/s)"
                    for c in fallbacks
                )
            )
    if measured is not None:
        lines.append("")
        lines.append(
            f"Measured: last call {duration(measured.last_duration_s)} = "
            f"{money(measured.last_cost_usd)}; {measured.calls} call(s), "
            f"{money(measured.mean_cost_usd)} per call on average"
        )
    for est in facts.estimates:
        lines.append("")
        fit = ""
        if choice is not None:
            fit = " — fits" if est.vram_gb <= choice.vram_gb else " — **does not fit**"
            fit += f" in {choice.vram_gb:g} GB"
        lines.append(f"Model `{est.model_id}`: ~{est.vram_gb:.1f} GB ({est.dtype}){fit}")
    if choice is not None:
        cheaper = _cheaper(facts, choice)
        if cheaper:
            lines.append("")
            lines.append(cheaper)
    return "\n".join(lines)


def _runtime_line(ep: Endpoint, where: Any) -> str:
    """With several runtimes ([runtimes] in slipstream.toml): which one serves the endpoint."""
    if where is None:
        return ""
    at = where(ep)
    if at.runtime is None:
        return f"\n\n{at.problem}"
    return f"\n\nRuns on runtime **{at.runtime}** (`{at.url}`)."


def hover(
    index: DocumentIndex,
    lines: LineIndex,
    position: types.Position,
    book: CostBook,
    where: Any = None,
) -> types.Hover | None:
    col = lines.column(position.line, position.character)
    ep = _target(index, position.line, col)
    if ep is None:
        return None
    facts = facts_for(ep)
    gpu = ep.args.get("gpu")
    if gpu is not None and gpu.span.contains(position.line, col):
        rng = lines.range(gpu.span)
    elif gpu is not None and gpu.literal_span and gpu.literal_span.contains(position.line, col):
        rng = lines.range(gpu.literal_span)
    else:
        rng = lines.range(ep.decorator)
    return types.Hover(
        contents=types.MarkupContent(
            kind=types.MarkupKind.Markdown,
            value=hover_markdown(facts, book) + _runtime_line(ep, where),
        ),
        range=rng,
    )
