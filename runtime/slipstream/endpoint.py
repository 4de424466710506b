"""The @endpoint decorator and the callables it returns."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from .spec.endpoint_spec import (
    EndpointSpec,
    Problem,
    SpecError,
    example_problems,
    params_of,
    validate,
)
from .spec.params import DEFAULTS, OPTIONS, bind_arguments

__all__ = [
    "endpoint",
    "Endpoint",
    "CallInfo",
    "SpecWarning",
    "registry",
    "bad_arguments",
    "IN_RUNTIME_ENV",
]

from .protocol.envvars import IN_RUNTIME as IN_RUNTIME_ENV  # noqa: E402

_UNSET: Any = object()  # an option with_options() was not given
_registry: dict[str, Endpoint] = {}
_warned: set[tuple[str, str]] = set()


class SpecWarning(UserWarning):
    """A decorator argument that works but is probably a mistake (e.g. a secret in env=)."""


def registry() -> dict[str, Endpoint]:
    """Endpoints defined in this process, by name (the runtime reads it after an import)."""
    return _registry


@dataclass
class CallInfo:
    """What the last call of an endpoint cost: busy seconds on the worker, priced per GPU, and
    the code generation it ran on."""

    endpoint: str
    duration_s: float
    cost_usd: float
    gpu: str
    device: str = ""
    worker: str = ""
    calls: int = 1  # after .map: how many calls these totals cover
    generation: str = ""  # the code it ran (a call running across a save finishes on the old)
    # after .map: the items (input indexes) each generation ran, {"g6": [0, ..., 39], "g7": [...]}
    generations: dict[str, list[int]] = field(default_factory=dict)


def endpoint(
    target: Any = None,
    /,
    *more: Any,
    name: str | None = None,
    gpu: Any = None,
    gpu_memory: float | None = None,
    workers: Any = 1,
    concurrency: int = 1,
    timeout: float = 300,
    idle_timeout: float = 60,
    dependencies: Iterable[str] = (),
    env: dict[str, str] | None = None,
    example: dict[str, Any] | None = None,
    retries: Any = 0,
    secrets: Iterable[str] = (),
    runtime: str | None = None,
) -> Any:
    """Mark a function or class to run on a Slipstream runtime: `@endpoint`, `@endpoint(gpu="H100")`,
    `@endpoint("paint", gpu="H100")` (the name may come first without its keyword). The
    parameters are spec/params.PARAMETERS (a test checks this signature matches it); see
    docs/endpoint-api.md."""
    params = {k: v for k, v in locals().items() if k in DEFAULTS}
    if target is not None and not (inspect.isclass(target) or callable(target)):
        # @endpoint("paint", ...): positional arguments bound as the editor binds them
        given = [(k, v) for k, v in params.items() if v is not DEFAULTS[k]]
        bound, problems = bind_arguments((target, *more), given)
        if problems:
            raise TypeError(problems[0][1].describe())
        params = {**params, **bound}
        name, target = params["name"], None
    elif more:
        raise TypeError(bind_arguments((None, *more), [])[1][0][1].describe())

    def wrap(obj: Any) -> Endpoint:
        if not (inspect.isclass(obj) or callable(obj)):
            raise TypeError("@endpoint goes on a function or a class")
        symbol = getattr(obj, "__name__", "endpoint")
        _refuse_nested(obj, symbol)
        spec, problems = validate(symbol, **params)
        problems += example_problems(example, _signature_params(obj), inspect.isclass(obj), symbol)
        shown = name if isinstance(name, str) else symbol
        if spec is None or any(p.severity == "error" for p in problems):
            raise SpecError(problems, shown)
        ep = Endpoint(obj, spec)
        ep.warnings = [p for p in problems if p.severity != "error"]
        _warn_once(ep)
        _registry[spec.name] = ep
        return ep

    return wrap(target) if target is not None else wrap


def _refuse_nested(obj: Any, symbol: str) -> None:
    """The runtime finds endpoints by importing their module: one inside a function or a class
    body is never seen there, so say so where it is written rather than at the first call."""
    qual = getattr(obj, "__qualname__", symbol)
    if qual == symbol:
        return
    outer = qual[: -len(symbol) - 1] if qual.endswith("." + symbol) else qual
    outer = outer.replace(".<locals>", "")
    raise TypeError(
        f"@endpoint on {symbol!r}, which is defined inside {outer!r}: endpoints must be defined at "
        f"module level, because the runtime imports the module to find them. Move {symbol!r} "
        "to the top level of its module."
    )


def _signature_params(obj: Any) -> dict[str, list[Any]]:
    if not inspect.isclass(obj):
        return {"": params_of(obj)}
    return {
        n: params_of(v, skip_first=True)
        for n, v in inspect.getmembers(obj, inspect.isfunction)
        if not n.startswith("_") and n != "setup"
    }


def _warn_once(ep: Endpoint) -> None:
    """Spec warnings, once per process; the runtime's scanner reports them in the deploy reply."""
    if os.environ.get(IN_RUNTIME_ENV):
        return
    level = 1
    frame: FrameType | None = sys._getframe(0)
    while frame is not None and frame.f_code.co_filename == __file__:
        level, frame = level + 1, frame.f_back  # point at the decorator in the user's file
    for p in ep.warnings:
        text = p.describe().removeprefix(f"{p.severity}: ")
        if (ep.name, text) not in _warned:
            _warned.add((ep.name, text))
            warnings.warn(f"endpoint {ep.name!r}: {text}", SpecWarning, stacklevel=level)


def bad_arguments(
    label: str, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any]
) -> str | None:
    """Every problem with calling fn(*args, **kwargs), like Python's own message but naming all
    of them (unexpected and missing arguments together); None when the call binds."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*args, **kwargs)
        return None
    except TypeError as exc:
        first = str(exc)
    P = inspect.Parameter
    params = list(sig.parameters.values())
    by_name = {p.name: p for p in params}
    pos = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    takes_more = any(p.kind == P.VAR_POSITIONAL for p in params)
    takes_any = any(p.kind == P.VAR_KEYWORD for p in params)
    by_keyword = {
        k for k, p in by_name.items() if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)
    }
    given_pos = {p.name for p in pos[: len(args)]}
    problems: list[str] = []
    if len(args) > len(pos) and not takes_more:
        problems.append(
            f"takes {len(pos)} positional argument{'s' if len(pos) != 1 else ''} but {len(args)} were given"
        )
    unexpected = [k for k in kwargs if k not in by_keyword and not takes_any]
    if unexpected:
        problems.append(
            f"got unexpected keyword argument{'s' if len(unexpected) > 1 else ''} {_quoted(unexpected)}"
        )
    twice = [k for k in kwargs if k in given_pos and k in by_keyword]
    if twice:
        problems.append(f"got multiple values for {_quoted(twice)}")
    missing = [
        p.name
        for p in params
        if p.default is p.empty
        and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
        and p.name not in given_pos
        and not (p.name in kwargs and p.name in by_keyword)
    ]
    if missing:
        problems.append(
            f"missing required argument{'s' if len(missing) > 1 else ''} {_quoted(missing)}"
        )
    return f"{label}{sig}: " + ("; ".join(problems) if problems else first)


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def refuse_at_import(ep: Endpoint, method: str | None, how: str) -> None:
    if os.environ.get(IN_RUNTIME_ENV) == "scan":
        target = f"{ep.name}().{method}" if method else ep.name
        raise RuntimeError(
            f"{target}{how} was called while the runtime imported module {ep.__module__!r} to find its endpoints; "
            'put top-level calls under `if __name__ == "__main__":`'
        )


def _modal_form(label: str, item: str) -> AttributeError | None:
    """Modal's f.remote(x) / f.remote_gen(x): say the Slipstream form instead of 'no attribute'."""
    if item in ("remote", "remote_gen"):
        return AttributeError(
            f"{label}.{item}(...) is Modal's form; in Slipstream call the endpoint itself: {label}(...) runs "
            f"on the runtime (await {label}.aio(...) in async code; docs/endpoint-api.md, Coming from Modal)"
        )
    return None


class Caller(Protocol):
    """How endpoints are called: the SDK implements it (sdk/calling.py) and the package installs
    it at import (slipstream/__init__.py), so that this module, which workers import to find
    endpoints, imports no client, session or HTTP library."""

    forms: dict[str, tuple[Callable[..., Any], Callable[..., Any]]]  # name -> (blocking, asyncio)

    def call(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...
    def stream(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...
    def call_async(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...
    def stream_async(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...


_installed: list[Caller] = []


def install_caller(caller: Caller) -> None:
    _installed[:] = [caller]


def _caller() -> Caller:
    if not _installed:
        raise RuntimeError(
            "slipstream's SDK is not installed: import slipstream (the package) before calling an endpoint"
        )
    return _installed[0]


class Form:
    """A call form with a blocking and an `.aio` variant: `f.map(...)` and `f.map.aio(...)`."""

    def __init__(self, sync: Callable[..., Any], aio: Callable[..., Any]) -> None:
        self._sync = sync
        self._aio = aio
        self.__doc__ = sync.__doc__
        self.__name__ = sync.__name__

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        return _BoundForm(obj, self)


class _BoundForm:
    def __init__(self, obj: Any, form: Form) -> None:
        self._obj = obj
        self._form = form
        self.__doc__ = form.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._form._sync(self._obj, *args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        return self._form._aio(self._obj, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self._form.__name__} of {self._obj!r}>"


class _SdkForm(Form):
    """A call form the SDK implements, looked up at its first use (Caller.forms)."""

    def __init__(self, name: str) -> None:
        self.__name__ = name

        def sync(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return _caller().forms[name][0](obj, *args, **kwargs)

        def aio(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return _caller().forms[name][1](obj, *args, **kwargs)

        self._sync, self._aio = sync, aio

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return _caller().forms[self.__name__][0].__doc__ if _installed else None


class _Callable:
    """Shared call surface of function endpoints and methods of class endpoints."""

    endpoint: Endpoint
    method: str | None

    def _fn(self) -> Callable[..., Any]:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        refuse_at_import(self.endpoint, self.method, "(...)")
        if _is_generator(self._fn()):
            return _caller().stream(self.endpoint, self.method, args, kwargs)
        return _caller().call(self.endpoint, self.method, args, kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        """`await f.aio(...)`: the result. For a generator endpoint (sync or async),
        `async for item in f.aio(...)` streams the items as the worker yields them, and
        `await f.aio(...)` gives them all as a list."""
        refuse_at_import(self.endpoint, self.method, ".aio(...)")
        if _is_generator(self._fn()):
            return AsyncStream(self.endpoint, self.method, args, kwargs)
        return _caller().call_async(self.endpoint, self.method, args, kwargs)

    # f.map(*iterables), f.starmap(tuples), f.for_each(*iterables), each with an .aio form
    # (sdk/mapping.py); f.spawn(...) -> a FunctionCall handle, f.spawn_map(*iterables) -> handles
    # (sdk/handles.py). The SDK implements them (sdk/calling.py).
    map = _SdkForm("map")
    starmap = _SdkForm("starmap")
    for_each = _SdkForm("for_each")
    spawn = _SdkForm("spawn")
    spawn_map = _SdkForm("spawn_map")


def _is_generator(fn: Any) -> bool:
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


class AsyncStream:
    """`f.aio(...)` of a generator endpoint: iterate it with `async for` (items as they are
    produced; leaving the loop early cancels the call), or await it for the list of items."""

    def __init__(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._call = (ep, method, args, kwargs)

    def __await__(self) -> Any:
        return _caller().call_async(*self._call).__await__()

    def __aiter__(self) -> Any:
        return _caller().stream_async(*self._call)


class Endpoint(_Callable):
    """A function or class marked with @endpoint."""

    variant_of: Endpoint | None = None  # set on f.with_options(...) variants
    variant_options: dict[str, Any] = {}  # noqa: RUF012 - replaced per variant, never mutated
    registered_gen: str | None = None  # the synced generation a variant was registered for

    def __init__(self, target: Any, spec: EndpointSpec) -> None:
        self.target = target
        self.spec = spec
        self.name = spec.name
        self.is_class = inspect.isclass(target)
        self.endpoint = self
        self.method = None
        self.last_call: CallInfo | None = None
        self.warnings: list[Problem] = []  # spec warnings (e.g. a secret-looking env key)
        self.__doc__ = target.__doc__
        self.__wrapped__ = target
        self.__name__ = getattr(target, "__name__", spec.name)
        self.__qualname__ = getattr(target, "__qualname__", spec.name)
        self.__module__ = getattr(target, "__module__", "__main__")

    def __repr__(self) -> str:
        kind = "class" if self.is_class else "function"
        return f"<slipstream endpoint {self.name!r} ({kind}, gpu={self.spec.gpu_label})>"

    def __getattr__(self, item: str) -> Any:
        modal = _modal_form(self.__dict__.get("name", "f"), item)
        if modal is not None:
            raise modal
        return getattr(self.target, item)

    @property
    def source_file(self) -> str | None:
        try:
            return inspect.getsourcefile(self.target)
        except TypeError:
            return None

    def methods(self) -> list[str]:
        if not self.is_class:
            return []
        return [
            n
            for n, v in inspect.getmembers(self.target, inspect.isfunction)
            if not n.startswith("_") and n != "setup"
        ]

    def _fn(self) -> Callable[..., Any]:
        return self.target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_class:
            if args or kwargs:
                raise TypeError(
                    f"class endpoint {self.name!r} takes no constructor arguments: "
                    "load things in setup(self), pass the rest to its methods"
                )
            return RemoteInstance(self)
        return super().__call__(*args, **kwargs)

    def with_options(
        self,
        *,
        gpu: Any = _UNSET,
        timeout: Any = _UNSET,
        retries: Any = _UNSET,
        workers: Any = _UNSET,
        concurrency: Any = _UNSET,
        idle_timeout: Any = _UNSET,
    ) -> Endpoint:
        """The same endpoint with other settings, served by a pool of its own on the runtime
        (`big = generate.with_options(gpu="H100", timeout=600)`; `big(x)`, `big.map(...)`...).
        Checked like the decorator's arguments (SpecError); the decorator is not changed."""
        from .spec.retries import Retries
        from .spec.variants import variant_spec

        # its keywords are spec/params.OPTIONS (a test checks this signature matches them)
        given = {k: v for k, v in locals().items() if k in OPTIONS and v is not _UNSET}
        if not given:
            raise TypeError(
                f"{self.name}.with_options() needs at least one of {', '.join(OPTIONS)}"
            )
        given = {
            k: v.to_dict() if isinstance(v, Retries) else list(v) if isinstance(v, tuple) else v
            for k, v in given.items()
        }
        base = self.variant_of or self
        options = {**self.variant_options, **given}
        v = Endpoint(base.target, variant_spec(base.spec, options))
        v.variant_of, v.variant_options = base, options
        return v

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run in this process, without a runtime (class endpoints: an instance, set up)."""
        if self.is_class:
            inst = self.target(*args, **kwargs)
            if callable(getattr(inst, "setup", None)):
                inst.setup()
            return inst
        result = self.target(*args, **kwargs)
        if inspect.iscoroutine(result):
            return asyncio.run(result)
        return result


class RemoteInstance:
    """`Painter()` for a class endpoint: methods run on the runtime's workers."""

    def __init__(self, ep: Endpoint) -> None:
        self._ep = ep
        self._local: Any = None

    def __getattr__(self, item: str) -> RemoteMethod:
        if item.startswith("_") or item == "setup":
            raise AttributeError(f"{item!r} is not a public method of endpoint {self._ep.name!r}")
        if not callable(getattr(self._ep.target, item, None)):
            raise AttributeError(f"endpoint {self._ep.name!r} has no method {item!r}")
        return RemoteMethod(self, item)

    def __repr__(self) -> str:
        return f"<remote instance of {self._ep.name!r}>"


class RemoteMethod(_Callable):
    def __init__(self, inst: RemoteInstance, method: str) -> None:
        self._inst = inst
        self.endpoint = inst._ep
        self.method = method

    def _fn(self) -> Callable[..., Any]:
        return getattr(self.endpoint.target, self.method or "")

    def __getattr__(self, item: str) -> Any:
        modal = (
            _modal_form(f"{self.endpoint.name}().{self.method}", item)
            if "method" in self.__dict__
            else None
        )
        raise modal or AttributeError(f"{type(self).__name__!r} object has no attribute {item!r}")

    def local(self, *args: Any, **kwargs: Any) -> Any:
        if self._inst._local is None:
            self._inst._local = self.endpoint.local()
        result = getattr(self._inst._local, self.method or "")(*args, **kwargs)
        if inspect.iscoroutine(result):
            return asyncio.run(result)
        return result
