"""The runtime's side of retries (the policy is spec/retries.py): a failed call is queued again
after its backoff, and a CUDA out-of-memory error moves the call to the next GPU of the
decorator's fallback list."""

from __future__ import annotations

import asyncio
from typing import Any

from ..protocol.kinds import ErrorKind
from ..spec.retries import Retries
from .failures import PoolError

__all__ = ["run_with_retries", "is_cuda_oom"]


async def run_with_retries(pool: Any, call: Any, once: Any) -> Any:
    """Pool.call with the endpoint's retries: each attempt is `once(call)`; a failure the spec
    retries re-queues the call (logged, counted) after its backoff."""
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
            if status == "ok" or not _retried(
                r, getattr(payload, "kind", ErrorKind.EXCEPTION), getattr(payload, "type", "")
            ):
                return call
            why = f"{payload.type}: {payload.message}"
            failure = (getattr(payload, "kind", ErrorKind.EXCEPTION), payload.type, payload.message)
        except PoolError as exc:
            if (
                r is None
                or attempt >= r.max_retries
                or call.cancelled
                or not _retried(r, exc.kind, "")
            ):
                raise
            why = str(exc)
            failure = (exc.kind, exc.info.type, str(exc))
        attempt += 1
        call.retries.append(
            {
                "attempt": len(call.retries) + 1,
                "kind": failure[0],
                "type": failure[1],
                "message": failure[2][:300],
                "gpu": pool.spec.gpu_label,
            }
        )
        delay = r.delay(attempt)
        pool.stats.retries = getattr(pool.stats, "retries", 0) + 1
        pool.logs.emit(
            endpoint=pool.name,
            stream="system",
            tag=call.tag,
            text=f"call {call.id} failed ({why[:300]}); retry {attempt} of {r.max_retries} in {delay:g}s",
        )
        await asyncio.sleep(delay)
        _reset(call)


def _retried(r: Retries, kind: str, type_name: str) -> bool:
    """Whether the policy retries a failure: an infrastructure one (crash, timeout) always, an
    exception of the endpoint's own code when `on=` names its type."""
    known = ErrorKind.parse(kind)
    if isinstance(known, ErrorKind) and known.retried_by_default:
        return True
    return kind == ErrorKind.EXCEPTION and r.retries_exception(type_name)


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
    if (
        call.stream
        or call.cancelled
        or not call.future.done()
        or call.future.exception() is not None
    ):
        return None
    status, payload = call.future.result()
    if status == "ok" or not is_cuda_oom(payload):
        return None
    nxt = pool.fallback_pool() if hasattr(pool, "fallback_pool") else None
    if nxt is None:
        return None
    here, there = pool.spec.gpu_label, nxt.spec.gpu_label
    pool.stats.gpu_fallbacks = getattr(pool.stats, "gpu_fallbacks", 0) + 1
    call.retries.append(
        {
            "attempt": len(call.retries) + 1,
            "kind": ErrorKind.CUDA_OOM,
            "type": payload.type,
            "message": payload.message[:300],
            "gpu": here,
            "moved_to": there,
        }
    )
    pool.logs.emit(
        endpoint=pool.name,
        stream="system",
        tag=call.tag,
        text=f"call {call.id} ran out of GPU memory on {here} ({payload.type}); moving it to {there} (gpu fallback list)",
    )
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
