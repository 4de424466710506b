"""Model swap: alternatives for an endpoint's model, and the libcst codemod that applies one.

The codemod (`ReplaceModelId`) rewrites the string literals holding the current model id in
the endpoint's definition and in the module-level constants it references, keeping each
literal's quotes and prefix. Only the changed lines are sent back, as a WorkspaceEdit.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from lsprotocol import types

from .diagnostics import requote
from .facts import display_gpu, facts_for
from .finder import DocumentIndex, Endpoint, ModelRef
from .positions import LineIndex, Span
from .protocol import ModelAlternative, ModelAlternativesResult

__all__ = ["ReplaceModelId", "current_model", "model_alternatives", "swap_edits"]


class ReplaceModelId(cst.CSTTransformer):
    """Replace every string literal equal to `old` with `new`, keeping quotes and prefix.

    A plain CSTTransformer rather than a `libcst.codemod` command: the codemod framework
    imports `libcst.matchers`, which alone adds ~0.3 s to the daemon's start.
    """

    def __init__(self, old: str, new: str) -> None:
        super().__init__()
        self.old = old
        self.new = new

    def leave_SimpleString(
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        if original_node.evaluated_value == self.old:
            return updated_node.with_changes(value=requote(updated_node.value, self.new))
        return updated_node


def _kind(model_id: str) -> str | None:
    from slipstream.spec import modelsize

    info = modelsize.lookup(model_id)
    if info is not None:
        return info.kind
    est = modelsize.estimate(model_id)
    return est.kind if est is not None else None


def _guess_kind(ep: Endpoint) -> str | None:
    modules = {imp.module for imp in ep.imports}
    if "diffusers" in modules:
        return "text-to-image"
    if modules & {"transformers", "vllm", "llama_cpp"}:
        return "llm"
    return None


def current_model(ep: Endpoint, kind: str | None = None) -> ModelRef | None:
    """The model an endpoint uses (the first of `kind`, when given and present)."""
    if kind is not None:
        for ref in ep.models:
            if _kind(ref.model_id) == kind:
                return ref
    return ep.models[0] if ep.models else None


def project_models(path: Path | None, endpoint: str) -> list[tuple[str, str]]:
    """The project's own swap list for an endpoint: `models.toml` beside `slipstream.toml`,
    `[endpoints.<name>] models = [{id, description}, ...]`; empty when there is none."""
    if path is None:
        return []
    from slipstream.sdk.config import find_project_root

    f = find_project_root(path) / "models.toml"
    try:
        data = tomllib.loads(f.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    models = data.get("endpoints", {}).get(endpoint, {}).get("models", [])
    return [
        (m["id"], m.get("description", "")) for m in models if isinstance(m, dict) and m.get("id")
    ]


def model_alternatives(ep: Endpoint, path: Path | None = None) -> ModelAlternativesResult:
    from slipstream.spec import modelsize
    from slipstream.spec.catalog import catalog

    facts = facts_for(ep)
    ref = current_model(ep)
    current = ref.model_id if ref else None
    kind = (_kind(current) if current else None) or _guess_kind(ep)
    choice = facts.primary
    items: list[ModelAlternative] = []
    listed = project_models(path, ep.name) or (modelsize.alternatives(kind) if kind else [])
    for model_id, description in listed:
        est = modelsize.estimate(model_id)
        vram = round(est.vram_gb, 2) if est is not None else None
        fits = vram is None or facts.is_cpu or (choice is not None and vram <= choice.vram_gb)
        price: float | None = None
        where = ""
        if choice is not None and fits:
            price = choice.price_per_second("flex")
            where = f"fits {display_gpu(choice.label)}"
        elif vram is not None and not facts.is_cpu:
            fitting = catalog().fitting(vram)
            if fitting:
                price = fitting[0].price_per_second("flex")
                where = f"needs {fitting[0].name} ({fitting[0].vram_gb:g} GB) or larger"
            else:
                where = "fits no single GPU"
        detail = [description]
        if vram is not None:
            detail.append(f"~{vram:g} GB")
        if where:
            detail.append(where)
        items.append(
            ModelAlternative(
                id=model_id,
                label=model_id + (" (current)" if model_id == current else ""),
                description=" · ".join(detail),
                paramsB=est.params_b if est is not None else None,
                vramGb=vram,
                fits=bool(fits),
                pricePerSecond=price,
            )
        )
    return ModelAlternativesResult(current=current, kind=kind, items=items)


@dataclass(frozen=True)
class _Region:
    first: int  # first line
    last: int  # last line, inclusive


def _regions(index: DocumentIndex, ep: Endpoint, old: str) -> list[_Region]:
    regions: set[_Region] = set()
    for ref in ep.models:
        if ref.model_id != old:
            continue
        if ref.constant is None:
            regions.add(_Region(ep.statement.line, ep.statement.end_line))
            continue
        const = index.constants.get(ref.constant)
        if const is not None:
            regions.add(_Region(const.line, const.value_span.end_line))
    return sorted(regions, key=lambda r: r.first)


def swap_edits(
    index: DocumentIndex, ep: Endpoint, new_id: str, lines: LineIndex
) -> tuple[str | None, list[types.TextEdit]]:
    """(the model id replaced, the edits that replace it with `new_id`)."""
    ref = current_model(ep, _kind(new_id))
    if ref is None or ref.model_id == new_id:
        return (ref.model_id if ref else None), []
    old = ref.model_id
    edits: list[types.TextEdit] = []
    src = index.lines
    for region in _regions(index, ep, old):
        before = src[region.first : region.last + 1]
        try:
            module = cst.parse_module("".join(before))
        except cst.ParserSyntaxError:
            continue
        after = module.visit(ReplaceModelId(old, new_id)).code.splitlines(keepends=True)
        matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            start = region.first + i1
            end = region.first + i2
            if end < len(src):
                span = Span(start, 0, end, 0)
            else:
                last = src[-1]
                span = Span(start, 0, len(src) - 1, len(last))
            edits.append(types.TextEdit(range=lines.range(span), new_text="".join(after[j1:j2])))
    return old, edits
