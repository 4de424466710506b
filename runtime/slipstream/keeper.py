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

__all__ = ["keep", "stats", "KeepStats"]

T = TypeVar("T")


@dataclass
class KeepStats:
    loads: int = 0
    hits: int = 0
    releases: int = 0
    load_seconds: float = 0.0
    keys: list[str] = field(default_factory=list)


_cache: dict[Hashable, Any] = {}
_lock = threading.RLock()
_stats = KeepStats()
# setup scope: scope name -> ordered keys of its last completed setup
_slots: dict[str, list[Hashable]] = {}
_current: dict[str, Any] = {}  # {"scope": str, "keys": list} while a setup runs


def keep(key: Hashable, loader: Callable[[], T]) -> T:
    """Return the object cached under key, or load it once with loader() and cache it."""
    with _lock:
        if key in _cache:
            _stats.hits += 1
            _note_use(key)
            return _cache[key]
        _release_replaced_slot(key)
        started = time.perf_counter()
        value = loader()
        _stats.load_seconds += time.perf_counter() - started
        _stats.loads += 1
        _cache[key] = value
        _note_use(key)
        return value


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
    value = _cache.pop(key, None)
    if value is None:
        return
    _stats.releases += 1
    del value
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
