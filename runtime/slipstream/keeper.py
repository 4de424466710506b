"""keep(): a per-worker cache of loaded objects (models) that survives code reloads.

Hot reload purges the user's modules but never this one, so what `keep` holds stays in memory.
During an endpoint's setup(), the n-th keep() call is a "slot": when a reload asks the same
slot for a new key (a swapped model), the old object is released *before* the new one loads,
so two large models never sit in GPU memory together. Keys no setup asked for are released
when that setup finishes.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["keep", "stats", "KeepStats", "kept", "release"]

T = TypeVar("T")


@dataclass
class KeepStats:
    loads: int = 0
    hits: int = 0
    releases: int = 0
    load_seconds: float = 0.0
    keys: list[str] = field(default_factory=list)


_cache: dict[Hashable, Any] = {}
_versions: dict[Hashable, Hashable] = {}  # key -> the version= it was loaded with
_lock = threading.RLock()
_stats = KeepStats()
# setup scope: scope name -> ordered keys of its last completed setup
_slots: dict[str, list[Hashable]] = {}
_current: dict[str, Any] = {}  # {"scope": str, "keys": list} while a setup runs


def keep(key: Hashable, loader: Callable[[], T], version: Hashable = None) -> T:
    """Return the object cached under key, or load it once with loader() and cache it.

    After a code reload the kept object follows its classes' new code (worker/follow.py);
    pass a new `version` (any value: a number, a string) to load it again instead, e.g. after
    changing how it is built (its class's __init__, the loader)."""
    with _lock:
        if key in _cache and _versions.get(key) == version:
            _stats.hits += 1
            _note_use(key)
            return _cache[key]
        if key in _cache:
            _release(key)  # a new version: the old object goes before the new one loads
        _release_replaced_slot(key)
        started = time.perf_counter()
        value = loader()
        _stats.load_seconds += time.perf_counter() - started
        _stats.loads += 1
        _cache[key] = value
        _versions[key] = version
        _note_use(key)
        return value


def kept() -> dict[Hashable, Any]:
    """What keep() holds now, by key (a copy of the mapping; the objects themselves)."""
    with _lock:
        return dict(_cache)


def release(keys: list[Hashable] | None = None) -> list[Hashable]:
    """Drop the kept objects under `keys` (None: all), so the next keep() of each loads it
    again (a rebuild). Returns the keys released."""
    with _lock:
        gone = [k for k in (list(_cache) if keys is None else keys) if k in _cache]
        for k in gone:
            _release(k)
        return gone


def stats() -> KeepStats:
    with _lock:
        _stats.keys = [repr(k) for k in _cache]
        return KeepStats(**vars(_stats))


def begin_setup(scope: str) -> None:
    with _lock:
        _current.clear()
        _current.update(scope=scope, keys=[])


def end_setup(scope: str, ok: bool = True) -> None:
    """Close a setup scope; on success release what the previous setup held and this one did not."""
    with _lock:
        if _current.get("scope") != scope:
            return
        used: list[Hashable] = _current["keys"]
        _current.clear()
        if not ok:
            return
        before = _slots.get(scope, [])
        _slots[scope] = used
        in_use = {k for keys in _slots.values() for k in keys}
        stale = [k for k in before if k not in in_use]
        for k in stale:
            _release(k)


def _note_use(key: Hashable) -> None:
    if _current:
        _current["keys"].append(key)


def _release_replaced_slot(key: Hashable) -> None:
    if not _current:
        return
    slot = len(_current["keys"])
    previous = _slots.get(_current["scope"], [])
    if slot >= len(previous):
        return
    old = previous[slot]
    others = {k for s, keys in _slots.items() if s != _current["scope"] for k in keys}
    if old != key and old in _cache and old not in others and old not in _current["keys"]:
        _release(old)


def _release(key: Hashable) -> None:
    _versions.pop(key, None)
    if key not in _cache:
        return
    value = _cache.pop(key)
    _stats.releases += 1
    del value
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
