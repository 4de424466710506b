"""Retries of failed calls: `@endpoint(retries=3)` or `retries=Retries(3, backoff=2.0, on=(...))`.

By default only infrastructure failures are retried: the worker crashed (exit, signal, out of
memory), the call ran past its timeout, or (in the SDK) the runtime was lost mid-call. The
user's own exceptions are never retried unless named in `on=`. The runtime retries on its side
(every form of call: SDK, HTTP, spawned, map items), logs each retry and counts it in
`stats.retries` and `slipstream_retries_total`. A streaming call is not retried once it has
produced items (they would be repeated).

A CUDA out-of-memory error (`torch.cuda.OutOfMemoryError`, or an error whose message says "CUDA
out of memory") moves the call to the next GPU of the decorator's fallback list that the runtime
has (`gpu=["H100", "A100-80GB"]`), with or without `retries=`: logged, counted in
`stats.gpu_fallbacks` and `slipstream_gpu_fallbacks_total`, and listed in the call's `retries`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Retries", "MAX_RETRIES", "INFRA_KINDS", "run_with_retries", "is_cuda_oom"]

MAX_RETRIES = 10
INFRA_KINDS = ("crash", "timeout")  # what the runtime retries by default


@dataclass(frozen=True, init=False)
class Retries:
    """How a failed call is retried: up to `max_retries` more attempts, waiting `backoff`
    seconds before the first, times `backoff_coefficient` before each next one (at most
    `max_backoff`). `on`: exception types (or their names) of your own code to retry too."""

    max_retries: int
    backoff: float
    backoff_coefficient: float
    max_backoff: float
    on: tuple[str, ...]

    def __init__(self, max_retries: int, backoff: float = 1.0, on: Iterable[type[BaseException] | str] = (),
                 backoff_coefficient: float = 2.0, max_backoff: float = 60.0) -> None:
        object.__setattr__(self, "max_retries", max_retries)
        object.__setattr__(self, "backoff", backoff)
        object.__setattr__(self, "backoff_coefficient", backoff_coefficient)
        object.__setattr__(self, "max_backoff", max_backoff)
        names = []
        for e in ((on,) if isinstance(on, (str, type)) else on):
            if isinstance(e, type) and issubclass(e, BaseException):
                mod = e.__module__
                names.append(e.__qualname__ if mod == "builtins" else f"{mod}.{e.__qualname__}")
            else:
                names.append(e)
        object.__setattr__(self, "on", tuple(names))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return min(self.backoff * self.backoff_coefficient ** (attempt - 1), self.max_backoff)

    def retries_error(self, kind: str, type_name: str) -> bool:
        if kind in INFRA_KINDS:
            return True
        if kind != "exception":
            return False
        return any(type_name == n or type_name.rsplit(".", 1)[-1] == n for n in self.on)

    def to_dict(self) -> dict[str, Any]:
        return {"max_retries": self.max_retries, "backoff": self.backoff, "backoff_coefficient": self.backoff_coefficient,
                "max_backoff": self.max_backoff, "on": list(self.on)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Retries:
        return cls(int(d.get("max_retries", 0)), float(d.get("backoff", 1.0)), tuple(d.get("on", ())),
                   float(d.get("backoff_coefficient", 2.0)), float(d.get("max_backoff", 60.0)))


def check(value: Any) -> tuple[Retries | None, str | None]:
    """The decorator's `retries=` as a Retries (None for no retries), or what is wrong with it."""
    if value is None or value == 0:
        return None, None
    if isinstance(value, dict):
        try:
            value = Retries.from_dict(value)
        except (TypeError, ValueError) as exc:
            return None, f"retries dict is not valid: {exc}"
    if isinstance(value, bool) or not isinstance(value, (int, Retries)):
        return None, f"retries must be a count or Retries(max_retries, backoff=..., on=(...)), not {type(value).__name__} {value!r}"
    r = Retries(value) if isinstance(value, int) else value
    if not isinstance(r.max_retries, int) or isinstance(r.max_retries, bool) or not 0 <= r.max_retries <= MAX_RETRIES:
        return None, f"retries must be between 0 and {MAX_RETRIES}, not {r.max_retries!r}"
    for f in ("backoff", "backoff_coefficient", "max_backoff"):
        v = getattr(r, f)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            return None, f"Retries {f} must be a number of seconds >= 0, not {v!r}"
    if r.backoff_coefficient < 1:
        return None, f"Retries backoff_coefficient must be >= 1, not {r.backoff_coefficient!r}"
    bad = [n for n in r.on if not isinstance(n, str) or not n]
    if bad:
        return None, f"Retries on= takes exception types or their names, not {bad[0]!r}"
    return (r if r.max_retries else None), None


async def run_with_retries(pool: Any, call: Any, once: Any) -> Any:
    """Pool.call with the endpoint's retries: each attempt is `once(call)`; a failure the spec
    retries re-queues the call (logged, counted) after its backoff."""
    from .pools import PoolError

    r: Retries | None = getattr(pool.spec, "retries", None)
    if call.stream:
        r = None  # items already sent would be repeated
    attempt = 0
    while True:
        try:
            await once(call)
            moved = await _move_on_cuda_oom(pool, call)
            if moved is not None:
                return moved
            if r is None or attempt >= r.max_retries or call.cancelled or not call.future.done():
                return call
            status, payload = call.future.result()
            if status == "ok" or not r.retries_error(getattr(payload, "kind", "exception"), getattr(payload, "type", "")):
                return call
            why = f"{payload.type}: {payload.message}"
            failure = (getattr(payload, "kind", "exception"), payload.type, payload.message)
        except PoolError as exc:
            if r is None or attempt >= r.max_retries or call.cancelled or not r.retries_error(exc.kind, ""):
                raise
            why = str(exc)
            failure = (exc.kind, exc.info.type, str(exc))
        attempt += 1
        call.retries.append({"attempt": len(call.retries) + 1, "kind": failure[0], "type": failure[1],
                             "message": failure[2][:300], "gpu": pool.spec.gpu_label})
        delay = r.delay(attempt)
        pool.stats.retries = getattr(pool.stats, "retries", 0) + 1
        pool.logs.emit(endpoint=pool.name, stream="system", tag=call.tag,
                       text=f"call {call.id} failed ({why[:300]}); retry {attempt} of {r.max_retries} in {delay:g}s")
        await asyncio.sleep(delay)
        _reset(call)


def is_cuda_oom(info: Any) -> bool:
    """Whether a call's error is CUDA running out of memory (torch.cuda.OutOfMemoryError, which
    torch names torch.OutOfMemoryError, or a RuntimeError saying "CUDA out of memory")."""
    type_name = str(getattr(info, "type", "") or "")
    if type_name.startswith("torch") and type_name.rsplit(".", 1)[-1] == "OutOfMemoryError":
        return True
    return "CUDA out of memory" in str(getattr(info, "message", "") or "")


async def _move_on_cuda_oom(pool: Any, call: Any) -> Any:
    """A call that ran out of CUDA memory runs again on the next GPU of the fallback list (its
    pool's `fallback_pool`), when there is one; returns the call once it ran there, else None."""
    if call.stream or call.cancelled or not call.future.done() or call.future.exception() is not None:
        return None
    status, payload = call.future.result()
    if status == "ok" or not is_cuda_oom(payload):
        return None
    nxt = pool.fallback_pool() if hasattr(pool, "fallback_pool") else None
    if nxt is None:
        return None
    here, there = pool.spec.gpu_label, nxt.spec.gpu_label
    pool.stats.gpu_fallbacks = getattr(pool.stats, "gpu_fallbacks", 0) + 1
    call.retries.append({"attempt": len(call.retries) + 1, "kind": "cuda-oom", "type": payload.type,
                         "message": payload.message[:300], "gpu": here, "moved_to": there})
    pool.logs.emit(endpoint=pool.name, stream="system", tag=call.tag,
                   text=f"call {call.id} ran out of GPU memory on {here} ({payload.type}); moving it to {there} (gpu fallback list)")
    _reset(call)
    return await nxt.call(call)


def _reset(call: Any) -> None:
    """The call, ready to queue again (same id, tag, body and logs so far)."""
    import time

    call.future = asyncio.get_running_loop().create_future()
    call.dispatched = asyncio.Event()
    call.worker = None
    call.started = 0.0
    call.duration = 0.0
    call.queued_at = time.perf_counter()
