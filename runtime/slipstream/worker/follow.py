"""Kept objects follow their classes: after a reload, what keep() holds runs the saved code.

A reload re-executes the changed modules, so their classes are new class objects; the objects
keep() holds (a model and everything it reaches: attributes, nn.Module children, lists and
dicts of them) were built from the old ones. Each such object whose class was defined in a
re-executed module gets the new class (``obj.__class__ = new``): methods, properties, class and
static methods, added or removed methods and subclasses all take effect, ``isinstance`` with the
module's class is true again, and the object's state (the weights) stays where it is.

Where swapping the class cannot be right, the object keeps its old class, consistently, and is
reported as stale with the reason (``__init__`` changed, so the object lacks what the new one
builds; bases, ``__slots__`` or a dataclass's fields changed; the class is gone): the user
rebuilds it (keep(..., version=...), `slipstream rebuild`, the editor's "Rebuild kept model").
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stale", "FollowReport", "reimport", "follow", "why_stale"]

# Objects visited per reload at most: a model of thousands of submodules is a few 10k objects;
# a kept list of a million numbers is skipped element by element below, not counted here.
MAX_VISITED = 500_000
_ATOMS = (int, float, complex, str, bytes, bytearray, bool, type(None), range, slice)
_SKIP_TYPES = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)


@dataclass
class Stale:
    """A kept object that still runs its old class's code, and why."""

    key: str  # repr of the keep() key
    path: str  # where inside the kept value ("" for itself): "transformer.h.0.mlp"
    cls: str  # module.qualname
    why: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class FollowReport:
    updated: int = 0  # objects now of the new class
    classes: list[str] = field(default_factory=list)  # the classes they follow
    stale: list[Stale] = field(default_factory=list)
    truncated: bool = False  # more than MAX_VISITED objects: the rest was not looked at

    def to_dict(self) -> dict[str, Any]:
        return {
            "updated": self.updated,
            "classes": self.classes,
            "stale": [s.to_dict() for s in self.stale],
            "truncated": self.truncated,
        }


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _classes_in(mod: types.ModuleType) -> dict[str, type]:
    """qualname -> class for the classes a module defines (nested classes too)."""
    out: dict[str, type] = {}
    todo = [v for v in vars(mod).values() if isinstance(v, type)]
    while todo:
        cls = todo.pop()
        if cls.__module__ != mod.__name__ or cls.__qualname__ in out:
            continue
        out[cls.__qualname__] = cls
        todo.extend(v for v in vars(cls).values() if isinstance(v, type))
    return out


def reimport(purged: Iterable[str]) -> dict[str, types.ModuleType | None]:
    """The re-executed modules that nothing imported again yet, imported now (so objects of
    their classes can follow); None for one that fails to import."""
    out: dict[str, types.ModuleType | None] = {}
    for name in purged:
        if name in sys.modules:
            continue
        try:
            out[name] = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - its objects are reported stale
            out[name] = None
    return out


def _resolve(mod: types.ModuleType, qualname: str) -> type | None:
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def _same_code(a: Any, b: Any) -> bool:
    """The same bytecode, names and constants (line numbers aside: moving a method is no change)."""
    if isinstance(a, (staticmethod, classmethod)) and type(a) is type(b):
        return _same_code(a.__func__, b.__func__)
    ca, cb = getattr(a, "__code__", None), getattr(b, "__code__", None)
    if ca is None or cb is None:
        return a is None and b is None
    return _same_codeobj(ca, cb)


def _same_codeobj(a: types.CodeType, b: types.CodeType) -> bool:
    if (a.co_code, a.co_names, a.co_varnames, a.co_freevars) != (
        b.co_code,
        b.co_names,
        b.co_varnames,
        b.co_freevars,
    ):
        return False
    if len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=True):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_codeobj(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _base_names(cls: type) -> list[str]:
    return [_qualname(b) for b in cls.__bases__]


def _fields(cls: type) -> list[tuple[str, str]] | None:
    if not dataclasses.is_dataclass(cls):
        return None
    return [(f.name, str(f.type)) for f in dataclasses.fields(cls)]


def why_stale(old: type, new: type | None) -> str:
    """Why an object of `old` cannot simply take the class `new` ("" when it can)."""
    name = old.__qualname__
    if new is None:
        return f"{name} is no longer defined in {old.__module__}"
    if _base_names(old) != _base_names(new):
        return (
            f"{name}'s base classes changed ({', '.join(_base_names(old))} -> "
            f"{', '.join(_base_names(new))})"
        )
    if vars(old).get("__slots__") != vars(new).get("__slots__"):
        return f"{name}'s __slots__ changed"
    if _fields(old) != _fields(new):
        return f"{name}'s dataclass fields changed"
    if not _same_code(vars(old).get("__init__"), vars(new).get("__init__")):
        return f"{name}.__init__ changed: the kept object was built by the old one"
    return ""


def _children(obj: Any) -> Iterable[tuple[str, Any]]:
    """(path step, value) for what an object reaches: containers' items and instance state."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(v, _ATOMS):
                yield f"[{k!r}]", v
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            if not isinstance(v, _ATOMS):
                yield f"[{i}]", v
        return
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        modules = d.get("_modules")  # nn.Module children: name them as users do (model.h.0)
        for k, v in d.items():
            if k == "_modules" and isinstance(modules, dict):
                for mk, mv in modules.items():
                    if mv is not None:
                        yield f".{mk}", mv
            elif not isinstance(v, _ATOMS):
                yield f".{k}", v
    for slot in _slot_names(type(obj)):
        v = getattr(obj, slot, None)
        if v is not None and not isinstance(v, _ATOMS):
            yield f".{slot}", v


def _slot_names(cls: type) -> list[str]:
    out: list[str] = []
    for c in cls.__mro__:
        s = vars(c).get("__slots__", ())
        out.extend(
            [s] if isinstance(s, str) else [n for n in s if n not in ("__dict__", "__weakref__")]
        )
    return out


def follow(kept: Mapping[Any, Any], modules: Mapping[str, types.ModuleType | None]) -> FollowReport:
    """Give each object reachable from the kept values whose class is an older version of a
    project module's class the current one, or report it stale (the full list, every time: an
    object stays stale until it is rebuilt, or its class is edited back). `modules` are the
    project's modules by name (None: one that could not be imported again). Objects are
    visited once, however many paths reach them."""
    report = FollowReport()
    verdicts: dict[type, tuple[type | None, str] | None] = {}
    seen: set[int] = set()
    stale_seen: set[tuple[str, type]] = set()
    classes: set[str] = set()

    def verdict(cls: type) -> tuple[type | None, str] | None:
        """None: not an old project class; else (the current class, why it cannot take it)."""
        if cls not in verdicts:
            name = cls.__module__
            out: tuple[type | None, str] | None = None
            if name in modules and "<locals>" not in cls.__qualname__:
                mod = modules[name]
                if mod is None:
                    out = (None, f"its module {name} could not be imported again")
                else:
                    new = _resolve(mod, cls.__qualname__)
                    if new is not cls:
                        out = (new, why_stale(cls, new))
            verdicts[cls] = out
        return verdicts[cls]

    for key, value in kept.items():
        todo: deque[tuple[str, Any]] = deque([("", value)])  # breadth first: shortest paths
        while todo:
            path, obj = todo.popleft()
            if id(obj) in seen or isinstance(obj, _ATOMS) or isinstance(obj, _SKIP_TYPES):
                continue
            if len(seen) >= MAX_VISITED:
                report.truncated = True
                break
            seen.add(id(obj))
            cls = type(obj)
            v = verdict(cls)
            if v is not None:
                new, why = v
                if not why:
                    try:
                        obj.__class__ = new
                    except TypeError as exc:  # a layout the new class cannot take
                        why = f"{cls.__qualname__} cannot take the new class ({exc})"
                        verdicts[cls] = (new, why)
                if why:
                    if (repr(key), cls) not in stale_seen:  # one line per kept key and class
                        stale_seen.add((repr(key), cls))
                        where = path.lstrip(".")  # "" for the kept object itself
                        report.stale.append(Stale(repr(key), where, _qualname(cls), why))
                else:
                    report.updated += 1
                    classes.add(_qualname(cls))
            if _is_tensor(obj):
                continue  # a tensor's storage holds no objects of the project's classes
            todo.extend((path + step, child) for step, child in _children(obj))
    report.classes = sorted(classes)
    return report


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return (
        torch is not None
        and isinstance(obj, torch.Tensor)
        and type(obj).__module__.startswith("torch")
    )
