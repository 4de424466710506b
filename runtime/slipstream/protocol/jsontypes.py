"""JSON arguments -> the parameters' annotated types, and JSON schemas of those types.

Used by the worker for HTTP calls (`slipstream dev`, the runtime's JSON call route): a body
`{"kwargs": {"req": {"prompt": "x", "size": {"w": 64}}}}` reaches `def f(req: Request)` as a
`Request` dataclass (or pydantic model, TypedDict, enum, list/dict/Optional of them), and a
body that does not fit is refused naming the field. The scanner uses the schemas for the
OpenAPI documents. Conversion and schemas come from pydantic (FastAPI's own dependency, so
present wherever the runtime is); without it, arguments pass through as JSON and schemas are
left out. The SDK's binary calls never go through here: they carry the objects themselves.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["ArgumentError", "convert_arguments", "param_schemas"]

_SKIP = object()  # an annotation pydantic cannot handle (e.g. PIL.Image): the value passes through


class ArgumentError(Exception):
    """A JSON argument that does not fit its parameter's type; the message names the field."""


def _pydantic() -> Any:
    try:
        import pydantic
    except ImportError:
        return None
    return pydantic


@functools.lru_cache(maxsize=1024)
def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - a name the annotations use is not importable here
        raw = getattr(fn, "__annotations__", {}) or {}
        return {k: v for k, v in raw.items() if not isinstance(v, str)}


def _portable(hint: Any) -> Any:
    """hint with typing.TypedDict classes rebuilt as typing_extensions ones: pydantic refuses
    the former before Python 3.12, and users write them."""
    if sys.version_info >= (3, 12):
        return hint
    import typing_extensions as te

    if te.is_typeddict(hint) and type(hint).__module__ == "typing":
        hints = typing.get_type_hints(hint)
        fields = {
            k: (te.Required if k in hint.__required_keys__ else te.NotRequired)[_portable(v)]
            for k, v in hints.items()
        }
        rebuilt = te.TypedDict(hint.__name__, fields)  # type: ignore[misc, operator]
        rebuilt.__module__ = hint.__module__
        return rebuilt
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if not args or origin is None:
        return hint
    new = tuple(_portable(a) for a in args)
    if new == args:
        return hint
    if origin is typing.Annotated:
        return typing.Annotated[(new[0], *hint.__metadata__)]
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[new]  # noqa: UP007 - built from a tuple of arguments
    if isinstance(hint, types.GenericAlias):
        return types.GenericAlias(origin, new)
    try:
        return hint.copy_with(new)
    except AttributeError:
        return hint


@functools.lru_cache(maxsize=4096)
def _adapter(hint: Any) -> Any:
    pydantic = _pydantic()
    if pydantic is None or hint is Any or hint is inspect.Parameter.empty:
        return _SKIP
    try:
        return pydantic.TypeAdapter(_portable(hint))
    except Exception:  # noqa: BLE001 - PydanticSchemaGenerationError and friends: not a JSON type
        return _SKIP


def _adapter_for(hint: Any) -> Any:
    if isinstance(hint, str):  # an annotation that names something not importable here
        return _SKIP
    try:
        return _adapter(hint)
    except TypeError:  # unhashable annotation
        return _SKIP


def _where(param: str, loc: tuple[Any, ...]) -> str:
    out = param
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@functools.lru_cache(maxsize=1024)
def _plan(fn: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]] | None:
    """fn's signature and, per parameter with a convertible annotation, its pydantic adapter
    (cached: a JSON call pays for the lookups once per function)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    hints = _hints(getattr(fn, "__func__", fn))
    adapters = {}
    for name, param in sig.parameters.items():
        adapter = _adapter_for(hints.get(name, param.annotation))
        if adapter is not _SKIP:
            adapters[name] = adapter
    return sig, adapters


_PLAIN = {str, int, float, bool}
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def convert_arguments(
    fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """args and kwargs (decoded JSON) converted to fn's annotated parameter types.

    Raises ArgumentError naming every argument (and field inside it) that does not fit.
    Unannotated parameters and types pydantic cannot describe pass through unchanged.
    """
    if _pydantic() is None:
        return args, kwargs
    try:
        plan = _plan(fn)
    except TypeError:  # an unhashable callable
        plan = None
    if plan is None or not plan[1]:
        return args, kwargs
    sig, adapters = plan
    if not args and all(k in sig.parameters and sig.parameters[k].kind in _BY_NAME for k in kwargs):
        # the usual JSON call, keyword arguments only: no binding needed
        values_by_name: dict[str, Any] = dict(kwargs)
        bound = None
    else:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return args, kwargs  # the caller reports bad arguments by name
        values_by_name = bound.arguments
    problems: list[str] = []
    for name, value in list(values_by_name.items()):
        adapter = adapters.get(name)
        if adapter is None:
            continue
        param = sig.parameters[name]
        if param.kind == param.VAR_POSITIONAL:
            values, single = list(value), False
        elif param.kind == param.VAR_KEYWORD:
            values, single = value, False
        else:
            if type(value) in _PLAIN and adapter.core_schema.get("type") == type(value).__name__:
                continue  # already the annotated plain type: nothing to convert
            values, single = [value], True
        converted: Any = [] if not isinstance(values, dict) else {}
        keys = range(len(values)) if isinstance(values, list) else list(values)
        for key in keys:
            label = name if single else (f"{name}[{key}]" if isinstance(key, int) else str(key))
            try:
                item = adapter.validate_python(values[key])
            except Exception as exc:  # noqa: BLE001 - pydantic.ValidationError
                errors = getattr(exc, "errors", None)
                if not callable(errors):
                    problems.append(f"{label}: {exc}")
                    continue
                for e in errors(include_url=False):
                    problems.append(
                        f"{_where(label, tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}"
                    )
                continue
            if isinstance(converted, list):
                converted.append(item)
            else:
                converted[key] = item
        if len(converted) != len(values):
            continue  # some item did not fit: reported below
        values_by_name[name] = (
            converted[0]
            if single
            else (tuple(converted) if isinstance(converted, list) else converted)
        )
    if problems:
        raise ArgumentError("; ".join(problems))
    if bound is None:
        return args, values_by_name
    return list(bound.args), dict(bound.kwargs)


def param_schemas(fn: Callable[..., Any], defs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """JSON schemas of fn's annotated parameters, by name; shared definitions (dataclasses,
    models, enums) go into ``defs`` and are referenced as #/components/schemas/<Name>."""
    if _pydantic() is None:
        return {}
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return {}
    hints = _hints(getattr(fn, "__func__", fn))
    out: dict[str, dict[str, Any]] = {}
    for name, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(name, param.annotation)
        if _adapter_for(hint) is _SKIP:
            continue
        try:
            # as a list's items, so that a named type (dataclass, model, enum) at the top is a
            # reference to a component too, not inlined
            wrapped = _pydantic().TypeAdapter(list[_portable(hint)])  # type: ignore[misc]
            schema = wrapped.json_schema(ref_template="#/components/schemas/{model}")
        except Exception:  # noqa: BLE001 - a type with no JSON schema (e.g. a callable)
            continue
        defs.update(schema.pop("$defs", {}))
        item = schema.get("items", {})
        item.pop("title", None)
        out[name] = item
    return out
