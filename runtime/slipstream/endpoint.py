"""The @endpoint decorator and the callables it returns."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .spec import EndpointSpec, build_spec

__all__ = ["endpoint", "Endpoint", "CallInfo", "registry", "IN_RUNTIME_ENV"]

IN_RUNTIME_ENV = "SLIPSTREAM_IN_RUNTIME"
_registry: dict[str, Endpoint] = {}


def registry() -> dict[str, Endpoint]:
    """Endpoints defined in this process, by name (the runtime reads it after an import)."""
    return _registry


@dataclass
class CallInfo:
    """What the last call of an endpoint cost: busy seconds on the worker, priced per GPU."""

    endpoint: str
    duration_s: float
    cost_usd: float
    gpu: str
    device: str = ""
    worker: str = ""
    calls: int = 1  # after .map: how many calls these totals cover


def endpoint(
    target: Any = None,
    *,
    name: str | None = None,
    gpu: Any = None,
    workers: Any = 1,
    concurrency: int = 1,
    timeout: float = 300,
    idle_timeout: float = 60,
    dependencies: Iterable[str] = (),
    env: dict[str, str] | None = None,
    example: dict[str, Any] | None = None,
) -> Any:
    """Mark a function or class to run on a Slipstream runtime. See docs/endpoint-api.md."""
    params = dict(
        name=name,
        gpu=gpu,
        workers=workers,
        concurrency=concurrency,
        timeout=timeout,
        idle_timeout=idle_timeout,
        dependencies=dependencies,
        env=env,
        example=example,
    )

    def wrap(obj: Any) -> Endpoint:
        if not (inspect.isclass(obj) or callable(obj)):
            raise TypeError("@endpoint goes on a function or a class")
        spec = build_spec(getattr(obj, "__name__", "endpoint"), **params)
        ep = Endpoint(obj, spec)
        _registry[spec.name] = ep
        return ep

    return wrap(target) if target is not None else wrap


class _Callable:
    """Shared call surface of function endpoints and methods of class endpoints."""

    endpoint: Endpoint
    method: str | None

    def _fn(self) -> Callable[..., Any]:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from . import session

        fn = self._fn()
        if inspect.isgeneratorfunction(fn):
            return session.current().stream(self.endpoint, self.method, args, kwargs)
        return session.current().call(self.endpoint, self.method, args, kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        from . import session

        return await session.current().call_async(self.endpoint, self.method, args, kwargs)

    def map(self, items: Iterable[Any], /, **kwargs: Any) -> list[Any]:
        """Call once per item (the item is the first argument), fanned out across workers;
        results come back in the order of items."""
        from . import session

        return session.current().map(self.endpoint, self.method, list(items), kwargs)


class Endpoint(_Callable):
    """A function or class marked with @endpoint."""

    def __init__(self, target: Any, spec: EndpointSpec) -> None:
        self.target = target
        self.spec = spec
        self.name = spec.name
        self.is_class = inspect.isclass(target)
        self.endpoint = self
        self.method = None
        self.last_call: CallInfo | None = None
        self.__doc__ = target.__doc__
        self.__wrapped__ = target
        self.__name__ = getattr(target, "__name__", spec.name)
        self.__qualname__ = getattr(target, "__qualname__", spec.name)
        self.__module__ = getattr(target, "__module__", "__main__")

    def __repr__(self) -> str:
        kind = "class" if self.is_class else "function"
        return f"<slipstream endpoint {self.name!r} ({kind}, gpu={self.spec.gpu_label})>"

    def __getattr__(self, item: str) -> Any:
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
        if os.environ.get(IN_RUNTIME_ENV) == "scan":
            raise RuntimeError(
                f"endpoint {self.name!r} was called while the runtime imported its module; "
                "put top-level calls under `if __name__ == '__main__':`"
            )
        return super().__call__(*args, **kwargs)

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

    def local(self, *args: Any, **kwargs: Any) -> Any:
        if self._inst._local is None:
            self._inst._local = self.endpoint.local()
        result = getattr(self._inst._local, self.method or "")(*args, **kwargs)
        if inspect.iscoroutine(result):
            return asyncio.run(result)
        return result
