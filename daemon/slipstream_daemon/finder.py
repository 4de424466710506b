"""Finding `@endpoint` definitions in a Python document, fast enough to run on every edit.

A full libcst parse of a 5,000-line module takes more than a second, and position metadata
several more, so the finder never parses the whole file. A cheap line scan finds:

- how `slipstream` is imported (`from slipstream import endpoint as ep`, `import slipstream
  as ss`, ...), which gives the decorator spellings to look for;
- top-level statement starts (lines that begin in column 0), which bound each decorated
  definition;
- module-level constant assignments (`MODEL = "Qwen/Qwen3-0.6B"`).

Only the top-level statements carrying an endpoint decorator are parsed with libcst, and only
the constants they reference. Each snippet's parse is cached by its text, so after an edit
only the snippet that changed is parsed again; the others are shifted to their new lines.
A snippet that does not parse is widened to the next statement boundaries a few times (a
docstring in column 0 can end a snippet early), and then reported as a syntax error.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from slipstream.spec.params import bind_arguments
from slipstream.spec.problems import Problem

from .positions import Span, split_lines

__all__ = [
    "UNRESOLVED",
    "Arg",
    "BodyImport",
    "Constant",
    "DocumentIndex",
    "Endpoint",
    "Method",
    "ModelRef",
    "SyntaxProblem",
    "index_document",
]


class _Unresolved:
    """An argument whose value is not a literal (or a constant holding one)."""

    _instance: _Unresolved | None = None

    def __new__(cls) -> _Unresolved:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNRESOLVED"

    def __bool__(self) -> bool:
        return False


UNRESOLVED: Any = _Unresolved()


@dataclass(frozen=True)
class Arg:
    """One argument of the decorator."""

    name: str
    value: Any  # the Python value, or UNRESOLVED
    span: Span  # where the argument's value is written
    source: str  # its code
    literal_span: Span | None = None  # the string literal defining it (maybe in a constant)
    constant: str | None = None  # the module-level constant it came from
    elements: tuple[tuple[Any, Span], ...] = ()  # items of a list/tuple value


@dataclass(frozen=True)
class ModelRef:
    """A string literal in (or referenced by) an endpoint that looks like a model id."""

    model_id: str
    span: Span  # the literal, quotes included
    constant: str | None = None


@dataclass(frozen=True)
class BodyImport:
    """An absolute import inside the endpoint's body."""

    module: str  # top-level package name: `diffusers` for `from diffusers.utils import x`
    span: Span


@dataclass(frozen=True)
class Method:
    name: str
    span: Span  # the method's name


@dataclass
class Endpoint:
    name: str  # the endpoint's name: `name=` or the function/class name
    symbol: str  # the function/class name
    kind: Literal["function", "class"]
    decorator: Span  # `@endpoint(...)`
    header: Span  # the function/class name
    statement: Span  # decorators through the end of the body
    args: dict[str, Arg]
    methods: list[Method]
    models: list[ModelRef]
    imports: list[BodyImport]
    is_async: bool = False
    # "" (a function) or each public method -> its parameters as (name, kind, required), the
    # form slipstream.spec.endpoint_spec.example_problems takes; None when not known (a class with bases)
    signatures: dict[str, list[tuple[str, str, bool]]] | None = None
    # arguments @endpoint refuses as written (a second positional one, a name given twice), each
    # at its argument: spec.params.bind_arguments, the same binding the decorator does at import
    binding_problems: list[tuple[Span, Problem]] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def kwargs(self) -> dict[str, Any]:
        """Arguments whose values are known, for validation."""
        return {k: a.value for k, a in self.args.items() if a.value is not UNRESOLVED}

    def value(self, key: str, default: Any = None) -> Any:
        arg = self.args.get(key)
        if arg is None or arg.value is UNRESOLVED:
            return default
        return arg.value


@dataclass(frozen=True)
class SyntaxProblem:
    message: str
    span: Span


@dataclass(frozen=True)
class Constant:
    name: str
    line: int
    value: Any
    value_span: Span
    literal_span: Span | None  # set when the value is a plain string literal
    strings: tuple[tuple[str, Span], ...] = ()  # string literals in the value


@dataclass
class DocumentIndex:
    uri: str
    version: int | None
    lines: list[str]
    endpoints: list[Endpoint]
    syntax_errors: list[SyntaxProblem]
    elapsed_ms: float = 0.0
    constants: dict[str, Constant] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def endpoint(self, name: str) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        for ep in self.endpoints:
            if ep.symbol == name:
                return ep
        return None

    def endpoint_at(self, line: int) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.statement.line <= line <= ep.statement.end_line:
                return ep
        return None


# --- the cheap scan -----------------------------------------------------------------------

_FROM_IMPORT = re.compile(
    r"^[ \t]*from[ \t]+slipstream[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)", re.MULTILINE
)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#]*\bslipstream\b[^\n#]*)", re.MULTILINE)
_DECORATOR = re.compile(r"@[ \t]*([A-Za-z_][\w]*(?:[ \t]*\.[ \t]*[A-Za-z_]\w*)*)")
_CONSTANT = re.compile(r"([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)")
_HEADER = re.compile(r"(?:async[ \t]+)?(?:def|class)\b")
_NOT_A_START = " \t#\r\n)]}\f"
_MAX_WIDEN = 3


def _slipstream_import_lines(source: str) -> str:
    """The lines (with any parenthesised continuation) that mention `slipstream`.

    Far cheaper than running the import patterns over a large module line by line.
    """
    found: list[str] = []
    at = source.find("slipstream")
    while at != -1:
        start = source.rfind("\n", 0, at) + 1
        end = source.find("\n", at)
        end = len(source) if end == -1 else end
        line = source[start:end]
        if "(" in line and ")" not in line:
            close = source.find(")", end)
            end = len(source) if close == -1 else close + 1
            line = source[start:end]
        found.append(line)
        at = source.find("slipstream", end)
    return "\n".join(found)


def _decorator_names(source: str) -> set[str]:
    """The spellings of `slipstream.endpoint` that this module's imports make available."""
    names: set[str] = set()
    source = _slipstream_import_lines(source)
    for match in _FROM_IMPORT.finditer(source):
        body = match.group(1).strip().strip("()")
        for part in body.replace("\n", " ").split(","):
            words = part.split()
            if not words:
                continue
            if words[0] == "*":
                names.add("endpoint")
            elif words[0] == "endpoint":
                names.add(words[2] if len(words) >= 3 and words[1] == "as" else "endpoint")
    for match in _IMPORT.finditer(source):
        for part in match.group(1).split(","):
            words = part.split()
            if not words or words[0] != "slipstream":
                continue
            alias = words[2] if len(words) >= 3 and words[1] == "as" else "slipstream"
            names.add(f"{alias}.endpoint")
    return names


def _top_level_starts(lines: list[str]) -> list[int]:
    return [i for i, text in enumerate(lines) if text and text[0] not in _NOT_A_START]


# --- parsing one snippet ------------------------------------------------------------------


@dataclass
class _RawEndpoint:
    """What a snippet's parse yields, in snippet-relative positions."""

    symbol: str
    kind: Literal["function", "class"]
    is_async: bool
    decorator: Span
    header: Span
    statement: Span
    call: cst.Call | None
    methods: list[Method]
    imports: list[BodyImport]
    strings: list[tuple[str, Span]]
    names: list[tuple[str, Span]]
    positions: Mapping[cst.CSTNode, CodeRange]
    code_lines: list[str]  # the snippet's lines, without line ends
    signatures: dict[str, list[tuple[str, str, bool]]] | None = None


@dataclass
class _Parsed:
    endpoints: list[_RawEndpoint]
    error: SyntaxProblem | None
    missing_definition: Span | None = None


def _span(rng: CodeRange) -> Span:
    return Span(rng.start.line - 1, rng.start.column, rng.end.line - 1, rng.end.column)


def _dotted(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        left = _dotted(node.value)
        return None if left is None else f"{left}.{node.attr.value}"
    return None


def _endpoint_decorator(
    node: cst.FunctionDef | cst.ClassDef, names: set[str]
) -> tuple[cst.Decorator, cst.Call | None] | None:
    for deco in node.decorators:
        expr = deco.decorator
        call = expr if isinstance(expr, cst.Call) else None
        target = call.func if call is not None else expr
        if _dotted(target) in names:
            return deco, call
    return None


class _Collector(cst.CSTVisitor):
    """Collects string literals, names and body imports under one definition."""

    def __init__(self, positions: Mapping[cst.CSTNode, CodeRange]) -> None:
        self.positions = positions
        self.strings: list[tuple[str, Span]] = []
        self.names: list[tuple[str, Span]] = []
        self.imports: list[BodyImport] = []
        self._in_body = 0

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        value = _string_value(node.value)
        if isinstance(value, str):
            self.strings.append((value, _span(self.positions[node])))

    def visit_Name(self, node: cst.Name) -> None:
        self.names.append((node.value, _span(self.positions[node])))

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            top = (_dotted(alias.name) or "").split(".")[0]
            if top:
                self.imports.append(BodyImport(top, _span(self.positions[alias.name])))

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None:
            return
        top = (_dotted(node.module) or "").split(".")[0]
        if top:
            self.imports.append(BodyImport(top, _span(self.positions[node.module])))


def _parse_snippet(code: str, names: frozenset[str]) -> _Parsed:
    try:
        module = cst.parse_module(code)
    except cst.ParserSyntaxError as exc:
        line = max(exc.raw_line - 1, 0)
        rows = code.splitlines()
        text = rows[line] if line < len(rows) else ""
        # from the error to the end of its line: a one-character squiggle is easy to miss
        span = Span(line, exc.raw_column, line, max(len(text.rstrip()), exc.raw_column + 1))
        return _Parsed([], SyntaxProblem(_syntax_message(exc.message), span))
    except Exception as exc:  # libcst raises a few other errors on odd input
        return _Parsed([], SyntaxProblem(f"Syntax error: {exc}", Span(0, 0, 0, 1)))

    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    code_lines = code.splitlines()
    found: list[_RawEndpoint] = []
    for stmt in module.body:
        if not isinstance(stmt, cst.FunctionDef | cst.ClassDef):
            continue
        match = _endpoint_decorator(stmt, set(names))
        if match is None:
            continue
        deco, call = match
        collector = _Collector(positions)
        for d in stmt.decorators:
            d.visit(collector)
        body_collector = _Collector(positions)
        stmt.body.visit(body_collector)
        if isinstance(stmt, cst.FunctionDef):
            for param in _all_params(stmt.params):
                param.visit(collector)
        methods: list[Method] = []
        signatures: dict[str, list[tuple[str, str, bool]]] | None = None
        if isinstance(stmt, cst.FunctionDef):
            signatures = {"": _signature(stmt.params)}
        elif not stmt.bases:  # inherited methods are not in the snippet: leave those unknown
            signatures = {}
        if isinstance(stmt, cst.ClassDef):
            for item in stmt.body.body:
                if isinstance(item, cst.FunctionDef):
                    name = item.name.value
                    if not name.startswith("_") and name != "setup":
                        methods.append(Method(name, _span(positions[item.name])))
                        if signatures is not None:
                            static = any(
                                _dotted(d.decorator) == "staticmethod" for d in item.decorators
                            )
                            signatures[name] = _signature(item.params)[0 if static else 1 :]
        first = stmt.decorators[0] if stmt.decorators else deco
        whole = _span(positions[stmt])
        start = _span(positions[first])
        found.append(
            _RawEndpoint(
                symbol=stmt.name.value,
                kind="function" if isinstance(stmt, cst.FunctionDef) else "class",
                is_async=isinstance(stmt, cst.FunctionDef) and stmt.asynchronous is not None,
                decorator=_span(positions[deco]),
                header=_span(positions[stmt.name]),
                statement=Span(start.line, start.col, whole.end_line, whole.end_col),
                call=call,
                methods=methods,
                imports=body_collector.imports,
                strings=collector.strings + body_collector.strings,
                names=collector.names + body_collector.names,
                positions=positions,
                code_lines=code_lines,
                signatures=signatures,
            )
        )
    return _Parsed(found, None)


def _signature(params: cst.Parameters) -> list[tuple[str, str, bool]]:
    """(name, inspect kind name, required) per parameter, as slipstream.spec.endpoint_spec.params_of gives."""
    out = [(p.name.value, "POSITIONAL_ONLY", p.default is None) for p in params.posonly_params]
    out += [(p.name.value, "POSITIONAL_OR_KEYWORD", p.default is None) for p in params.params]
    if isinstance(params.star_arg, cst.Param):
        out.append((params.star_arg.name.value, "VAR_POSITIONAL", False))
    out += [(p.name.value, "KEYWORD_ONLY", p.default is None) for p in params.kwonly_params]
    if params.star_kwarg is not None:
        out.append((params.star_kwarg.name.value, "VAR_KEYWORD", False))
    return out


def _all_params(params: cst.Parameters) -> Iterable[cst.CSTNode]:
    yield from params.posonly_params
    yield from params.params
    yield from params.kwonly_params
    if isinstance(params.star_arg, cst.Param):
        yield params.star_arg
    if params.star_kwarg is not None:
        yield params.star_kwarg


class _SnippetCache:
    """Parses keyed by snippet text (and the decorator spellings), least recently used out."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, frozenset[str]], _Parsed] = OrderedDict()
        self._lock = threading.Lock()

    def parse(self, code: str, names: frozenset[str]) -> _Parsed:
        key = (code, names)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        parsed = _parse_snippet(code, names)
        with self._lock:
            self._items[key] = parsed
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return parsed


_CACHE = _SnippetCache()
_CONSTANT_CACHE: OrderedDict[str, tuple[cst.BaseExpression, Mapping[cst.CSTNode, CodeRange]]]
_CONSTANT_CACHE = OrderedDict()
_CONSTANT_LOCK = threading.Lock()


# --- resolving values -----------------------------------------------------------------------


class _Resolver:
    """Turns expressions into Python values, following module-level constants."""

    def __init__(self, lines: list[str], starts: list[int], constant_lines: dict[str, list[int]]):
        self.lines = lines
        self.starts = starts
        self.constant_lines = constant_lines
        self.constants: dict[str, Constant] = {}
        self._missing: set[str] = set()
        self._depth = 0

    def constant(self, name: str, before: int | None = None) -> Constant | None:
        lines = self.constant_lines.get(name)
        if not lines:
            return None
        candidates = [n for n in lines if before is None or n < before] or lines
        line = candidates[-1]
        key = f"{name}@{line}"
        if key in self.constants:
            return self.constants[key]
        if key in self._missing or self._depth > 4:
            return None
        self._depth += 1
        try:
            const = self._parse_constant(name, line)
        finally:
            self._depth -= 1
        if const is None:
            self._missing.add(key)
        else:
            self.constants[key] = const
        return const

    def _parse_constant(self, name: str, line: int) -> Constant | None:
        index = _bisect_right(self.starts, line)
        end = self.starts[index] if index < len(self.starts) else len(self.lines)
        code = "".join(self.lines[line:end])
        with _CONSTANT_LOCK:
            cached = _CONSTANT_CACHE.get(code)
        if cached is None:
            try:
                module = cst.parse_module(code)
            except Exception:
                return None
            if not module.body or not isinstance(module.body[0], cst.SimpleStatementLine):
                return None
            small = module.body[0].body[0] if module.body[0].body else None
            if isinstance(small, cst.Assign):
                value_node: cst.BaseExpression | None = small.value
            elif isinstance(small, cst.AnnAssign):
                value_node = small.value
            else:
                value_node = None
            if value_node is None:
                return None
            positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
            cached = (value_node, positions)
            with _CONSTANT_LOCK:
                _CONSTANT_CACHE[code] = cached
                while len(_CONSTANT_CACHE) > 1024:
                    _CONSTANT_CACHE.popitem(last=False)
        value_node, positions = cached
        value = self.evaluate(value_node, before=line)
        literal = None
        if isinstance(value_node, cst.SimpleString):
            literal = _span(positions[value_node]).shifted(line)
        strings = tuple(
            (s, _span(positions[n]).shifted(line))
            for s, n in _strings_in(value_node)
            if n in positions
        )
        return Constant(
            name=name,
            line=line,
            value=value,
            value_span=_span(positions[value_node]).shifted(line),
            literal_span=literal,
            strings=strings,
        )

    def evaluate(self, node: cst.BaseExpression, before: int | None = None) -> Any:
        if isinstance(node, cst.SimpleString):
            value = _string_value(node.value)
            return UNRESOLVED if value is None else value
        if isinstance(node, cst.ConcatenatedString):
            try:
                value = node.evaluated_value
            except Exception:
                return UNRESOLVED
            return UNRESOLVED if value is None else value
        if isinstance(node, cst.Integer | cst.Float):
            return node.evaluated_value
        if isinstance(node, cst.Name):
            if node.value in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.value]
            const = self.constant(node.value, before)
            return UNRESOLVED if const is None else const.value
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
            inner = self.evaluate(node.expression, before)
            return -inner if isinstance(inner, int | float) else UNRESOLVED
        if isinstance(node, cst.Tuple | cst.List | cst.Set):
            items = []
            for el in node.elements:
                if not isinstance(el, cst.Element):
                    return UNRESOLVED
                item = self.evaluate(el.value, before)
                if item is UNRESOLVED:
                    return UNRESOLVED
                items.append(item)
            if isinstance(node, cst.List):
                return items
            return tuple(items) if isinstance(node, cst.Tuple) else set(items)
        if isinstance(node, cst.Dict):
            out: dict[Any, Any] = {}
            for item in node.elements:
                if not isinstance(item, cst.DictElement):
                    return UNRESOLVED
                key = self.evaluate(item.key, before)
                val = self.evaluate(item.value, before)
                if key is UNRESOLVED or val is UNRESOLVED:
                    return UNRESOLVED
                try:
                    out[key] = val
                except TypeError:
                    return UNRESOLVED
            return out
        if isinstance(node, cst.Call) and _dotted(node.func) == "dict":
            out = {}
            for a in node.args:
                if a.keyword is None:
                    return UNRESOLVED
                val = self.evaluate(a.value, before)
                if val is UNRESOLVED:
                    return UNRESOLVED
                out[a.keyword.value] = val
            return out
        return UNRESOLVED


@functools.lru_cache(maxsize=8192)
def _string_value(literal: str) -> str | bytes | None:
    """A string literal's value (libcst's evaluated_value runs ast.literal_eval each time), or
    None for one that libcst parses but Python refuses (a null byte, a bad escape)."""
    try:
        return cst.SimpleString(literal).evaluated_value
    except (SyntaxError, ValueError):
        return None


def _strings_in(node: cst.CSTNode) -> list[tuple[str, cst.SimpleString]]:
    found: list[tuple[str, cst.SimpleString]] = []

    class _V(cst.CSTVisitor):
        def visit_SimpleString(self, n: cst.SimpleString) -> None:
            value = _string_value(n.value)
            if isinstance(value, str):
                found.append((value, n))

    node.visit(_V())
    return found


def _bisect_right(items: list[int], value: int) -> int:
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _build_endpoint(
    raw: _RawEndpoint,
    offset: int,
    resolver: _Resolver,
    is_model_id: Callable[[str], bool],
) -> Endpoint:
    positions = raw.positions
    code_lines = raw.code_lines
    decorator_line = raw.decorator.line + offset

    def node_span(node: cst.CSTNode) -> Span:
        return _span(positions[node]).shifted(offset)

    def node_source(node: cst.CSTNode) -> str:
        s = _span(positions[node])
        if s.line == s.end_line:
            return code_lines[s.line][s.col : s.end_col]
        parts = [code_lines[s.line][s.col :]]
        parts.extend(code_lines[s.line + 1 : s.end_line])
        parts.append(code_lines[s.end_line][: s.end_col])
        return "\n".join(parts)

    args: dict[str, Arg] = {}
    binding: dict[str, cst.Arg] = {}
    binding_problems: list[tuple[Span, Problem]] = []
    if raw.call is not None:
        given = [a for a in raw.call.args if not a.star]
        binding, refused = bind_arguments(
            [a for a in given if a.keyword is None],
            [(a.keyword.value, a) for a in given if a.keyword is not None],
        )
        binding_problems = [(node_span(a.value), problem) for a, problem in refused]
    for key, a in binding.items():
        value = resolver.evaluate(a.value, before=decorator_line)
        literal: Span | None = None
        constant: str | None = None
        if isinstance(a.value, cst.SimpleString):
            literal = node_span(a.value)
        elif isinstance(a.value, cst.Name):
            const = resolver.constant(a.value.value, before=decorator_line)
            if const is not None:
                constant, literal = const.name, const.literal_span
        elements: tuple[tuple[Any, Span], ...] = ()
        if isinstance(a.value, cst.List | cst.Tuple):
            elements = tuple(
                (resolver.evaluate(el.value, before=decorator_line), node_span(el.value))
                for el in a.value.elements
                if isinstance(el, cst.Element)
            )
        args[key] = Arg(
            name=key,
            value=value,
            span=node_span(a.value),
            source=node_source(a.value),
            literal_span=literal,
            constant=constant,
            elements=elements,
        )

    models: list[ModelRef] = []
    seen: set[Span] = set()
    for text, span in raw.strings:
        if is_model_id(text):
            shifted = span.shifted(offset)
            if shifted not in seen:
                seen.add(shifted)
                models.append(ModelRef(text, shifted))
    for name, _ in raw.names:
        if name not in resolver.constant_lines:
            continue
        const = resolver.constant(name, before=decorator_line)
        if const is None:
            continue
        for text, span in const.strings:
            if is_model_id(text) and span not in seen:
                seen.add(span)
                models.append(ModelRef(text, span, constant=name))

    name_arg = args["name"].value if "name" in args else None
    return Endpoint(
        name=name_arg if isinstance(name_arg, str) and name_arg else raw.symbol,
        symbol=raw.symbol,
        kind=raw.kind,
        decorator=raw.decorator.shifted(offset),
        header=raw.header.shifted(offset),
        statement=raw.statement.shifted(offset),
        args=args,
        methods=[Method(m.name, m.span.shifted(offset)) for m in raw.methods],
        models=models,
        imports=[BodyImport(i.module, i.span.shifted(offset)) for i in raw.imports],
        is_async=raw.is_async,
        signatures=raw.signatures,
        binding_problems=binding_problems,
    )


def _unclosed_decorator(lines: list[str], deco_line: int, header_line: int) -> SyntaxProblem | None:
    """A decorator whose '(' is never closed: point at it rather than where parsing gave up."""
    text = "".join(lines[deco_line:header_line])
    if text.count("(") <= text.count(")"):
        return None
    first = lines[deco_line]
    col = first.find("(")
    return SyntaxProblem(
        "Syntax error: '(' was never closed",
        Span(deco_line, max(col, 0), deco_line, len(first.rstrip("\r\n"))),
    )


def _syntax_message(message: str) -> str:
    """libcst's message without snippet-relative positions, and its token lists shortened."""
    message = message.replace("tokenizer error: ", "").replace("parser error: ", "")
    message = re.sub(r"^error at \d+:\d+: ", "", message)
    if message.startswith("expected one of") and len(message) > 60:
        message = "invalid syntax"
    return f"Syntax error: {message}"


def _never_model(_: str) -> bool:
    return False


def index_document(
    uri: str,
    version: int | None,
    source: str,
    is_model_id: Callable[[str], bool] = _never_model,
) -> DocumentIndex:
    """Find the endpoints of one version of a document."""
    started = time.perf_counter()
    lines = split_lines(source)
    names = _decorator_names(source)
    if not names:
        return DocumentIndex(uri, version, lines, [], [], (time.perf_counter() - started) * 1e3)
    frozen_names = frozenset(names)
    starts = _top_level_starts(lines)

    decorator_lines: list[int] = []
    constant_lines: dict[str, list[int]] = {}
    for n in starts:
        text = lines[n]
        if text[0] == "@":
            match = _DECORATOR.match(text)
            if match and re.sub(r"[ \t]", "", match.group(1)) in names:
                decorator_lines.append(n)
        else:
            match = _CONSTANT.match(text)
            if match:
                constant_lines.setdefault(match.group(1), []).append(n)

    resolver = _Resolver(lines, starts, constant_lines)
    endpoints: list[Endpoint] = []
    errors: list[SyntaxProblem] = []
    covered_until = -1
    for deco_line in decorator_lines:
        if deco_line <= covered_until:
            continue
        k = starts.index(deco_line)
        first = k
        while first > 0 and lines[starts[first - 1]][0] == "@":
            first -= 1
        j = k + 1
        while j < len(starts) and lines[starts[j]][0] == "@":
            j += 1
        header_found = j < len(starts) and _HEADER.match(lines[starts[j]]) is not None
        if header_found:
            j += 1
        begin = starts[first]
        parsed: _Parsed | None = None
        first_error: SyntaxProblem | None = None
        end = len(lines)
        for widen in range(_MAX_WIDEN + 1):
            end = starts[j + widen] if j + widen < len(starts) else len(lines)
            parsed = _CACHE.parse("".join(lines[begin:end]), frozen_names)
            if parsed.error is None:
                break
            if first_error is None:
                first_error = parsed.error
            if end == len(lines):
                break
        assert parsed is not None
        if parsed.error is not None:
            problem = first_error or parsed.error
            if not header_found:
                text = lines[deco_line].rstrip("\r\n")
                problem = SyntaxProblem(
                    "`@endpoint` must decorate a function or a class",
                    Span(deco_line, 0, deco_line, len(text)),
                )
            else:
                unclosed = None
                if "unterminated" not in problem.message:  # the string error says more
                    unclosed = _unclosed_decorator(lines, deco_line, starts[j - 1])
                problem = unclosed or SyntaxProblem(problem.message, problem.span.shifted(begin))
            errors.append(problem)
            continue
        covered_until = end - 1
        for raw in parsed.endpoints:
            endpoints.append(_build_endpoint(raw, begin, resolver, is_model_id))

    constants = {c.name: c for c in resolver.constants.values()}
    elapsed = (time.perf_counter() - started) * 1e3
    return DocumentIndex(uri, version, lines, endpoints, errors, elapsed, constants)
