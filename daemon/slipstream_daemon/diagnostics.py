"""Diagnostics: spec problems while typing, and errors the runtime reported, at their source.

While typing: every problem `slipstream.spec.endpoint_spec.validate` finds (unknown GPU, workers min > max,
bad timeouts, ...) at the argument it is about; a model larger than the GPU's memory at the
model id; a third-party package imported in the endpoint's body but missing from its
`dependencies`. Some carry fixes (`Fix`), which `actions` offers as quick fixes.

From the runtime: a deploy that failed to import and a remote exception, each at the local
file and line it came from, until the next deploy or run replaces it; a kept object that runs
its old code after a reload, a warning at its endpoint's decorator (kept.py) until a deploy or
a rebuild says it no longer does.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

from .facts import EndpointFacts, facts_for
from .finder import DocumentIndex, Endpoint
from .positions import LineIndex, Span

__all__ = [
    "SOURCE",
    "Finding",
    "Fix",
    "Reported",
    "ReportedProblems",
    "endpoint_findings",
    "fix_edits",
    "reported_diagnostics",
    "to_diagnostics",
]

SOURCE = "slipstream"
_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
}
# Import names whose distribution is named differently, for packages that are not installed
# here (installed ones are looked up in importlib.metadata).
_DISTRIBUTIONS = {
    "PIL": "pillow",
    "cv2": "opencv-python",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "attr": "attrs",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "pyjwt",
    "fitz": "pymupdf",
    "docx": "python-docx",
    "Crypto": "pycryptodome",
}


@dataclass(frozen=True)
class Edit:
    span: Span
    new_text: str


@dataclass(frozen=True)
class Fix:
    title: str
    edits: tuple[Edit, ...]
    preferred: bool = True


@dataclass
class Finding:
    span: Span
    message: str
    code: str
    severity: str = "error"
    fixes: list[Fix] = field(default_factory=list)


# --- while typing ---------------------------------------------------------------------------


def _text(lines: list[str], span: Span) -> str:
    if span.line == span.end_line:
        return lines[span.line][span.col : span.end_col] if span.line < len(lines) else ""
    parts = [lines[span.line][span.col :]]
    parts += lines[span.line + 1 : span.end_line]
    parts.append(lines[span.end_line][: span.end_col])
    return "".join(parts)


def requote(literal: str, value: str) -> str:
    """`value` as a string literal written like `literal` (same prefix and quotes)."""
    match = re.match(r"([rRuUbBfF]*)('''|\"\"\"|'|\")", literal)
    prefix, quote = (match.group(1), match.group(2)) if match else ("", '"')
    if "r" not in prefix.lower():
        value = value.replace("\\", "\\\\")
    if len(quote) == 1:
        value = value.replace(quote, "\\" + quote)
    return f"{prefix}{quote}{value}{quote}"


def _message(problem: Any) -> str:
    return f"{problem.message}. {problem.hint}" if problem.hint else problem.message


def _gpu_findings(ep: Endpoint, lines: list[str]) -> list[Finding]:
    """Unknown GPU names, each at its own entry, with the nearest catalog name as the fix."""
    from slipstream.spec.catalog import catalog

    arg = ep.args.get("gpu")
    if arg is None:
        return []
    entries: list[tuple[Any, Span, Span | None]] = []
    if isinstance(arg.value, str):
        entries.append((arg.value, arg.span, arg.literal_span))
    elif isinstance(arg.value, list | tuple):
        if arg.elements and len(arg.elements) == len(arg.value):
            entries += [(v, s, s) for v, s in arg.elements]
        else:
            entries += [(v, arg.span, None) for v in arg.value]
    out: list[Finding] = []
    cat = catalog()
    for value, span, literal in entries:
        if not isinstance(value, str):
            continue
        _, problems = cat.parse(value)
        for problem in problems:
            if problem.code != "unknown-gpu":
                continue
            name, sep, count = value.partition(":")
            fixes: list[Fix] = []
            if literal is not None:
                old = _text(lines, literal)
                if old[:1] in "\"'" or old[:2].lower() in ("r'", 'r"', "u'", 'u"'):
                    for near in cat.nearest(name.strip())[:3]:
                        new = near + (f":{count.strip()}" if sep else "")
                        fixes.append(
                            Fix(
                                f"Change to '{new}'", (Edit(literal, requote(old, new)),), not fixes
                            )
                        )
            out.append(Finding(span, _message(problem), problem.code, problem.severity, fixes))
    return out


def _workers_fix(ep: Endpoint, lines: list[str]) -> list[Fix]:
    arg = ep.args.get("workers")
    if arg is None or len(arg.elements) != 2:
        return []
    (_, a), (_, b) = arg.elements
    return [
        Fix(
            "Swap min and max",
            (Edit(a, _text(lines, b)), Edit(b, _text(lines, a))),
        )
    ]


def _model_findings(facts: EndpointFacts, lines: list[str]) -> list[Finding]:
    from slipstream.spec.catalog import catalog
    from slipstream.spec.endpoint_spec import model_problems

    ep = facts.endpoint
    if facts.spec is None or not ep.models:
        return []
    ids = list(dict.fromkeys(ref.model_id for ref in ep.models))
    out: list[Finding] = []
    for problem in model_problems(facts.spec, ids):
        need = next(
            (e.vram_gb for e in facts.estimates if problem.message.startswith(e.model_id)), None
        )
        fixes: list[Fix] = []
        gpu = ep.args.get("gpu")
        if need is not None and gpu is not None and gpu.literal_span and isinstance(gpu.value, str):
            fitting = catalog().fitting(need)
            if fitting:
                old = _text(lines, gpu.literal_span)
                fixes.append(
                    Fix(
                        f"Use gpu='{fitting[0].name}' ({fitting[0].vram_gb:g} GB)",
                        (Edit(gpu.literal_span, requote(old, fitting[0].name)),),
                    )
                )
        for ref in ep.models:
            if problem.message.startswith(ref.model_id + " "):
                out.append(
                    Finding(ref.span, _message(problem), problem.code, problem.severity, fixes)
                )
    return out


@functools.cache
def _installed_distributions() -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    try:
        return dict(packages_distributions())
    except Exception:
        return {}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return _canonical(match.group(1)) if match else None


def distribution_for(module: str) -> str:
    """The pip name that provides an import name (best guess)."""
    installed = _installed_distributions().get(module)
    if installed:
        return installed[0]
    return _DISTRIBUTIONS.get(module, module)


def _is_project_module(module: str, roots: list[Path]) -> bool:
    for root in roots:
        if (root / f"{module}.py").is_file() or (root / module / "__init__.py").is_file():
            return True
        if (root / module).is_dir():
            return True
    return False


def _dependency_findings(ep: Endpoint, lines: list[str], roots: list[Path]) -> list[Finding]:
    if not ep.imports:
        return []
    deps_arg = ep.args.get("dependencies")
    declared_value = ep.value("dependencies", ())
    if deps_arg is not None and not isinstance(declared_value, list | tuple):
        return []  # not a literal list: nothing to compare against
    declared = {
        name for dep in declared_value if isinstance(dep, str) if (name := _requirement_name(dep))
    }
    out: list[Finding] = []
    reported: set[str] = set()
    for imp in ep.imports:
        module = imp.module
        if module in reported or module in sys.stdlib_module_names or module == "__future__":
            continue
        if module == "slipstream" or _is_project_module(module, roots):
            continue
        candidates = {_canonical(module), _canonical(distribution_for(module))}
        candidates.update(_canonical(d) for d in _installed_distributions().get(module, ()))
        if candidates & declared:
            continue
        reported.add(module)
        dist = distribution_for(module)
        fixes = []
        fix = _add_dependency(ep, deps_arg, lines, dist)
        if fix is not None:
            fixes.append(fix)
        out.append(
            Finding(
                imp.span,
                f"'{module}' is imported in endpoint '{ep.name}' but '{dist}' is not in its "
                f"dependencies, so the runtime may not install it. Add it to dependencies=[...]",
                "undeclared-dependency",
                "warning",
                fixes,
            )
        )
    return out


def _add_dependency(ep: Endpoint, deps_arg: Any, lines: list[str], dist: str) -> Fix | None:
    title = f"Add '{dist}' to dependencies"
    quoted = f'"{dist}"'
    if deps_arg is not None:
        if deps_arg.elements:
            end = deps_arg.elements[-1][1]
            at = Span(end.end_line, end.end_col, end.end_line, end.end_col)
            return Fix(title, (Edit(at, f", {quoted}"),))
        if isinstance(deps_arg.value, list | tuple) and not deps_arg.value:
            return Fix(title, (Edit(deps_arg.span, f"[{quoted}]"),))
        return None
    deco = ep.decorator
    if not ep.args:
        text = _text(lines, deco).rstrip()
        if text.endswith("()"):
            at = Span(deco.end_line, deco.end_col - 1, deco.end_line, deco.end_col - 1)
            return Fix(title, (Edit(at, f"dependencies=[{quoted}]"),))
        if "(" not in text:
            at = Span(deco.end_line, deco.end_col, deco.end_line, deco.end_col)
            return Fix(title, (Edit(at, f"(dependencies=[{quoted}])"),))
        return None
    last = list(ep.args.values())[-1].span
    at = Span(last.end_line, last.end_col, last.end_line, last.end_col)
    return Fix(title, (Edit(at, f", dependencies=[{quoted}]"),))


def endpoint_findings(index: DocumentIndex, roots: list[Path]) -> list[Finding]:
    """Everything wrong with the document's endpoints, with fixes where there is an obvious one."""
    lines = index.lines
    out: list[Finding] = [Finding(e.span, e.message, "syntax-error") for e in index.syntax_errors]
    for ep in index.endpoints:
        facts = facts_for(ep)
        # what @endpoint refuses at import (a second positional argument): flagged, not guessed at
        out += [Finding(span, _message(p), p.code, p.severity) for span, p in ep.binding_problems]
        out += _gpu_findings(ep, lines)
        for problem in facts.problems:
            if problem.code == "unknown-gpu":
                continue  # reported per entry above
            arg = ep.args.get(problem.field) if problem.field else None
            span = arg.span if arg is not None else ep.decorator
            fixes = _workers_fix(ep, lines) if problem.code == "workers-min-gt-max" else []
            out.append(Finding(span, _message(problem), problem.code, problem.severity, fixes))
        out += _example_findings(ep)
        out += _model_findings(facts, lines)
        out += _dependency_findings(ep, lines, roots)
    return out


def _example_findings(ep: Endpoint) -> list[Finding]:
    """`example=` against the function's (or each method's) parameters, at the example."""
    from slipstream.spec.endpoint_spec import example_problems

    arg = ep.args.get("example")
    if arg is None or not isinstance(arg.value, dict):
        return []
    problems = example_problems(arg.value, ep.signatures, ep.kind == "class", ep.symbol)
    return [Finding(arg.span, _message(p), p.code, p.severity) for p in problems]


def to_diagnostic(finding: Finding, lines: LineIndex) -> types.Diagnostic:
    return types.Diagnostic(
        range=lines.range(finding.span),
        message=finding.message,
        severity=_SEVERITY.get(finding.severity, types.DiagnosticSeverity.Error),
        code=finding.code,
        source=SOURCE,
    )


def fix_edits(fix: Fix, lines: LineIndex) -> list[types.TextEdit]:
    return [types.TextEdit(range=lines.range(e.span), new_text=e.new_text) for e in fix.edits]


# --- reported by the runtime ----------------------------------------------------------------


@dataclass(frozen=True)
class Reported:
    path: Path
    line: int  # one-based
    message: str
    code: str  # "deploy-error" | "remote-exception" | "kept-stale"
    key: str  # what replaces it: the project root for deploys and kept objects, the endpoint for runs
    severity: str = "error"  # as Finding.severity
    endpoint: str = ""  # kept-stale: the endpoint its "Rebuild kept model" quick fix rebuilds


class ReportedProblems:
    """Errors from deploys and runs, kept until the next deploy or run of the same thing."""

    def __init__(self) -> None:
        self._items: list[Reported] = []
        self._lock = threading.Lock()

    def replace(self, code: str, key: str, items: list[Reported]) -> set[Path]:
        """Swap the problems of one kind and key; returns the paths whose diagnostics changed."""
        with self._lock:
            old = [r for r in self._items if r.code == code and r.key == key]
            self._items = [r for r in self._items if not (r.code == code and r.key == key)]
            self._items += items
        return {r.path for r in old} | {r.path for r in items}

    def clear_under(self, code: str, root: Path) -> set[Path]:
        with self._lock:
            gone = [r for r in self._items if r.code == code and _under(r.path, root)]
            self._items = [r for r in self._items if r not in gone]
        return {r.path for r in gone}

    def for_path(self, path: Path) -> list[Reported]:
        with self._lock:
            return [r for r in self._items if r.path == path]


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def reported_diagnostics(items: list[Reported], lines: LineIndex) -> list[types.Diagnostic]:
    out = []
    for item in items:
        row = max(item.line - 1, 0)
        text = lines.lines[row].rstrip("\r\n") if row < len(lines.lines) else ""
        start = len(text) - len(text.lstrip())
        out.append(
            types.Diagnostic(
                range=lines.range(Span(row, start, row, max(len(text), start))),
                message=item.message,
                severity=_SEVERITY.get(item.severity, types.DiagnosticSeverity.Error),
                code=item.code,
                source=SOURCE,
            )
        )
    return out


def to_diagnostics(findings: list[Finding], lines: LineIndex) -> list[types.Diagnostic]:
    return [to_diagnostic(f, lines) for f in findings]
