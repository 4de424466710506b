"""`f.map`, `f.starmap` and `f.for_each`: many calls of one endpoint, results as they finish.

Inputs are read lazily (several iterables zip like the built-in map), a bounded number of calls
is in flight at once, and results come back as an iterator (an async iterator for `.aio`): in
input order (`order_outputs=True`) or as the calls complete. With `return_exceptions=True` each
failure takes its item's place; otherwise the first failure lets the calls still to come run,
then raises `slipstream.MapError` with every failure by index and every result kept.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..protocol.errors import MapError, Overloaded, index_ranges
from ..protocol.kinds import ErrorKind
from .progress import MapProgress, enabled, known_total
from .secretvals import with_secrets
from .waiting import FULL, until_room, until_room_async

if TYPE_CHECKING:
    from ..endpoint import Endpoint
    from .session import Session

__all__ = [
    "map_calls",
    "map_calls_async",
    "argument_sets",
    "index_ranges",
    "MAP",
    "STARMAP",
    "FOR_EACH",
]

MAX_WIDTH = 64
# False: each call of a map waits for a lost runtime on its own, as before the shared
# deadline (bench/bench_dead_runtime.py measures both); never set it otherwise
_SHARED_WATCH = True


def argument_sets(
    iterables: tuple[Iterable[Any], ...], star: bool, what: str
) -> Iterator[tuple[Any, ...]]:
    """The positional arguments of each call: zipped iterables (map), or each item unpacked
    (starmap); checked up front so a wrong call fails before anything runs."""
    if star:
        if len(iterables) != 1:
            raise TypeError(
                f"{what}.starmap() takes one iterable of argument tuples, not {len(iterables)}"
            )
        src = iter(_iterable(iterables[0], what, "starmap"))
        return (_as_tuple(item, what) for item in src)
    if not iterables:
        raise TypeError(
            f"{what}.map() needs at least one iterable (each item is a call's first argument)"
        )
    its = [iter(_iterable(it, what, "map")) for it in iterables]
    return zip(*its, strict=False)  # like the built-in map: stops at the shortest


def _iterable(obj: Any, what: str, form: str) -> Iterable[Any]:
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        kind = type(obj).__name__
        hint = f" (wrap it in a list: [{obj!r}])" if isinstance(obj, (str, bytes)) else ""
        raise TypeError(f"{what}.{form}() takes iterables of inputs; got a {kind}{hint}")
    return obj


def _as_tuple(item: Any, what: str) -> tuple[Any, ...]:
    if isinstance(item, tuple):
        return item
    if isinstance(item, list):
        return tuple(item)
    raise TypeError(
        f"{what}.starmap() needs each item to be a tuple of arguments, got {type(item).__name__}: {item!r}"
    )


def _width(ep: Endpoint) -> int:
    return min(max(4, ep.spec.workers_max * ep.spec.concurrency * 2), MAX_WIDTH)


def _summarise(
    session: Session,
    ep: Endpoint,
    before: tuple[float, float],
    calls: int,
    generations: dict[str, list[int]],
) -> None:
    """After a map: `ep.last_call` holds the totals over its items (busy seconds and cost) and
    the items each code generation ran."""
    if ep.last_call is not None and calls:
        ep.last_call = replace(
            ep.last_call,
            duration_s=session.busy_s - before[0],
            cost_usd=session.spend_usd - before[1],
            calls=calls,
            generation=list(generations)[-1] if generations else ep.last_call.generation,
            generations=generations,
        )


def _mixed_line(what: str, generations: dict[str, list[int]]) -> str:
    """What a map that ran on several code generations says at its end (one line)."""
    parts = [f"{index_ranges(idx)} on {gen}" for gen, idx in generations.items()]
    return (
        f"map of {what} ran on {len(generations)} code versions: items {', '.join(parts)} "
        "(a save landed during the map)"
    )


class _Batch:
    """The bookkeeping the blocking and the asyncio forms share: the calls in flight (futures or
    tasks, by input index), the finished ones not yet handed out, every result and failure."""

    def __init__(
        self,
        width: int,
        order_outputs: bool,
        return_exceptions: bool,
        progress: MapProgress | None,
        what: str = "",
    ) -> None:
        self.room = width * 2
        self.what = what
        # the code generation each item ran on, by index: a map does not pin its generation
        # (that would hold a second copy of a model); each item runs on the one live when it starts
        self.gens: dict[int, str] = {}
        self.gen_order: list[str] = []  # each generation once, as the first reply from it came
        self.order_outputs = order_outputs
        self.return_exceptions = return_exceptions
        self.progress = progress
        self.pending: dict[Any, int] = {}  # future or task -> index
        self.finished: dict[int, tuple[bool, Any]] = {}  # index -> (ok, value or exception)
        self.results: dict[int, Any] = {}
        self.errors: dict[int, BaseException] = {}
        self.count = 0
        self.exhausted = False
        self.failed = False  # a failure reached the caller's position: run the rest, then raise
        self.nxt = 0  # the next index to hand out (ordered)
        self._counted: set[Any] = set()  # calls already counted by the progress line
        self._count_lock = threading.Lock()

    def fill(
        self, argsets: Iterator[tuple[Any, ...]], start: Callable[[tuple[Any, ...], int], Any]
    ) -> None:
        """Start calls (`start(args, index)` returns a future or a task) until the window is
        full or the inputs end."""
        while not self.exhausted and len(self.pending) < self.room:
            try:
                args = next(argsets)
            except StopIteration:
                self.exhausted = True
                return
            fut = start(args, self.count)
            if self.progress is not None:  # counted as calls finish, whenever the caller reads them
                fut.add_done_callback(self._tick)
            self.pending[fut] = self.count
            self.count += 1

    def _tick(self, f: Any) -> None:
        # From the call's done callback, and again when the caller takes it: a done callback
        # may run after the map has taken its last call (asyncio schedules it, the executor runs
        # it after waking waiters), and the last line must count every call.
        if self.progress is None or f.cancelled():
            return
        with self._count_lock:
            if f in self._counted:
                return
            self._counted.add(f)
        self.progress.tick(f.exception() is None)

    def take(self, done: Iterable[Any]) -> list[int]:
        """Record the calls that finished; their indexes, sorted. Ctrl-C and the like re-raise."""
        got = []
        for f in done:
            i = self.pending.pop(f)
            self._tick(f)
            exc = f.exception()
            if exc is None:
                self.finished[i] = (True, f.result())
                self.results[i] = f.result()
            else:
                if not isinstance(exc, Exception):
                    raise exc
                self.finished[i] = (False, exc.with_traceback(None))
                self.errors[i] = self.finished[i][1]
            got.append(i)
        return sorted(got)

    def ran_on(self, index: int) -> Callable[[str], None]:
        """What records the generation item `index` ran on (from its reply)."""

        def record(gen: str) -> None:
            if gen:
                with self._count_lock:
                    self.gens[index] = gen
                    if gen not in self.gen_order:
                        self.gen_order.append(gen)

        return record

    def generations(self) -> dict[str, list[int]]:
        """The items each generation ran, the generations in the order they first answered."""
        out: dict[str, list[int]] = {g: [] for g in self.gen_order}
        for i in sorted(self.gens):
            out[self.gens[i]].append(i)
        return out

    def next_ready(self) -> bool:
        """In input order, the next result to hand out has finished."""
        return self.order_outputs and self.nxt in self.finished

    def more(self) -> bool:
        return bool(self.pending) or (not self.failed and self.next_ready())

    def must_wait(self) -> bool:
        return self.failed or not self.next_ready()

    def hand_out(self, ready: list[int]) -> Iterator[Any]:
        """The values the caller gets now; stops at the first failure (unless return_exceptions)."""
        if self.failed:
            return
        if self.order_outputs:
            order = []
            while self.nxt in self.finished:
                order.append(self.nxt)
                self.nxt += 1
        else:
            order = ready
        for i in order:
            ok, value = self.finished.pop(i)
            if ok or self.return_exceptions:
                yield value
            else:
                self.failed = True
                return

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def end(self, session: Session, ep: Endpoint, before: tuple[float, float]) -> None:
        """All calls ran: the totals on `ep.last_call`, one line on stderr when the items ran on
        several code generations, then MapError if a failure is to raise."""
        gens = self.generations()
        _summarise(session, ep, before, self.count, gens)
        if len(gens) > 1:
            print(
                f"slipstream: {_mixed_line(self.what or ep.name, gens)}",
                file=sys.stderr,
                flush=True,
            )
        if self.errors and not self.return_exceptions:
            first = self.errors[min(self.errors)]
            raise MapError(self.errors, [self.results.get(i) for i in range(self.count)]) from first


def _batch(
    session: Session,
    ep: Endpoint,
    order_outputs: bool,
    return_exceptions: bool,
    total: int | None,
    what: str | None,
) -> _Batch:
    progress = MapProgress(what or ep.name, total, lambda: session.spend_usd) if enabled() else None
    return _Batch(_width(ep), order_outputs, return_exceptions, progress, what or ep.name)


def map_calls(
    session: Session,
    ep: Endpoint,
    method: str | None,
    argsets: Iterator[tuple[Any, ...]],
    kwargs: dict[str, Any],
    *,
    order_outputs: bool = True,
    return_exceptions: bool = False,
    total: int | None = None,
    what: str | None = None,
) -> Iterator[Any]:
    """The blocking form: a generator of results (see the module's docstring). `total` (the
    number of inputs, when known) and `what` (the endpoint's name) label the progress line."""
    session.ensure(ep)  # sync before the first input is read: a deploy error surfaces here
    kwargs = with_secrets(ep, kwargs, session.root)  # a missing secret fails before any call
    timeout = ep.spec.timeout + 30
    # a runtime lost mid-map: one deadline for every call of the map, not one per call in flight
    # (imported here: `import slipstream` must not load the HTTP client, see test_sdk_imports)
    from .recovery import RuntimeWatch

    watch = RuntimeWatch() if _SHARED_WATCH else None

    def one(args: tuple[Any, ...], index: int) -> Any:
        def attempt() -> Any:
            try:
                out = session._with_retry(
                    ep, lambda c: c.call(ep.name, method, args, kwargs, timeout=timeout), watch
                )
            except Overloaded:
                return FULL
            return FULL if out.error and out.error.kind == ErrorKind.OVERLOADED else out

        # a batch waits for room rather than failing (waiting.py)
        return session._finish(ep, until_room(attempt), ran_on=b.ran_on(index))

    before = (session.busy_s, session.spend_usd)
    b = _batch(session, ep, order_outputs, return_exceptions, total, what)
    ex = ThreadPoolExecutor(_width(ep), thread_name_prefix=f"map-{ep.name}")

    def start(args: tuple[Any, ...], index: int) -> Future[Any]:
        return ex.submit(one, args, index)

    try:
        b.fill(argsets, start)
        while b.more():
            ready: list[int] = []
            if b.pending:
                done, _ = wait(
                    list(b.pending),
                    timeout=None if b.must_wait() else 0,
                    return_when=FIRST_COMPLETED,
                )
                ready = b.take(done)
            b.fill(argsets, start)
            yield from b.hand_out(ready)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C: the calls running are cancelled too
        b.close()  # the last progress line first: the calls aborted next are not failures
        ex.shutdown(wait=False, cancel_futures=True)
        session.abort()
        raise
    finally:
        # done, or left early (a break, the iterator dropped): calls not started never start;
        # those running finish on their worker and their results are dropped
        ex.shutdown(wait=False, cancel_futures=True)
        b.close()
    b.end(session, ep, before)


async def map_calls_async(
    session: Session,
    ep: Endpoint,
    method: str | None,
    argsets: Iterator[tuple[Any, ...]],
    kwargs: dict[str, Any],
    *,
    order_outputs: bool = True,
    return_exceptions: bool = False,
    total: int | None = None,
    what: str | None = None,
) -> AsyncIterator[Any]:
    """The asyncio form (`async for r in f.map.aio(...)`): the same promises as map_calls."""
    await asyncio.to_thread(session.ensure, ep)
    before = (session.busy_s, session.spend_usd)
    from .recovery import RuntimeWatch

    watch = RuntimeWatch() if _SHARED_WATCH else None

    async def one(args: tuple[Any, ...], index: int) -> Any:
        async def attempt() -> Any:
            try:
                return await session.call_async(
                    ep, method, args, kwargs, ran_on=b.ran_on(index), watch=watch
                )
            except Overloaded:
                return FULL

        return await until_room_async(attempt)

    def start(args: tuple[Any, ...], index: int) -> asyncio.Task[Any]:
        return asyncio.ensure_future(one(args, index))

    b = _batch(session, ep, order_outputs, return_exceptions, total, what)
    try:
        b.fill(argsets, start)
        while b.more():
            ready: list[int] = []
            if b.pending and b.must_wait():
                done, _ = await asyncio.wait(list(b.pending), return_when=asyncio.FIRST_COMPLETED)
                ready = b.take(done)
            b.fill(argsets, start)
            for value in b.hand_out(ready):
                yield value
    finally:
        for t in b.pending:  # leaving early or cancelled: the calls still running are cancelled
            t.cancel()
        b.close()
    b.end(session, ep, before)


# --- the call forms on endpoints and methods (endpoint._Callable) -----------------------------
def _progress_of(self: Any, iterables: tuple[Iterable[Any], ...]) -> dict[str, Any]:
    """The progress line's label and count of inputs (None when an iterable has no length)."""
    what = self.endpoint.name if self.method is None else f"{self.endpoint.name}().{self.method}"
    return {"total": known_total(iterables), "what": what}


def _prepare(
    self: Any,
    form: str,
    iterables: tuple[Iterable[Any], ...],
    kwargs: dict[str, Any] | None,
    common: dict[str, Any],
    star: bool = False,
) -> tuple[Session, Iterator[tuple[Any, ...]], dict[str, Any]]:
    from ..endpoint import refuse_at_import as _refuse_at_import
    from .loading import session_module as _session_module

    what = self.endpoint.name if self.method is None else f"{self.endpoint.name}().{self.method}"
    _refuse_at_import(self.endpoint, self.method, f".{form}(...)")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(
            f"{what}.{form}(kwargs=...) takes a dict of keyword arguments for every call, not {type(kwargs).__name__}"
        )
    both = set(kwargs or {}) & set(common)
    if both:
        raise TypeError(
            f"{what}.{form}() got {sorted(both)} both in kwargs= and as keyword arguments; pass each once"
        )
    return (
        _session_module().current(),
        argument_sets(iterables, star, what),
        {**(kwargs or {}), **common},
    )


def _map(
    self: Any,
    *iterables: Iterable[Any],
    kwargs: dict[str, Any] | None = None,
    order_outputs: bool = True,
    return_exceptions: bool = False,
    **common: Any,
) -> Iterator[Any]:
    """Call once per input, fanned out across workers: `f.map(xs)` calls f(x) for each x,
    `f.map(xs, ys)` calls f(x, y) (zipped like the built-in map), `kwargs={...}` (or plain
    keyword arguments) go to every call. Returns an iterator of results as calls finish, in
    input order (`order_outputs=False`: as they complete); use list(...) for a list.
    `return_exceptions=True` puts each failure's exception in its place; otherwise after the
    first failure the remaining inputs still run and `slipstream.MapError` is raised with every
    failure by index and every result. `f.map.aio(...)` is the async iterator form."""
    session, argsets, kw = _prepare(self, "map", iterables, kwargs, common)
    return map_calls(
        session,
        self.endpoint,
        self.method,
        argsets,
        kw,
        order_outputs=order_outputs,
        return_exceptions=return_exceptions,
        **_progress_of(self, iterables),
    )


def _map_aio(
    self: Any,
    *iterables: Iterable[Any],
    kwargs: dict[str, Any] | None = None,
    order_outputs: bool = True,
    return_exceptions: bool = False,
    **common: Any,
) -> AsyncIterator[Any]:
    session, argsets, kw = _prepare(self, "map", iterables, kwargs, common)
    return map_calls_async(
        session,
        self.endpoint,
        self.method,
        argsets,
        kw,
        order_outputs=order_outputs,
        return_exceptions=return_exceptions,
        **_progress_of(self, iterables),
    )


def _starmap(
    self: Any,
    iterable: Iterable[Any],
    /,
    *,
    kwargs: dict[str, Any] | None = None,
    order_outputs: bool = True,
    return_exceptions: bool = False,
) -> Iterator[Any]:
    """`f.starmap([(1, 2), (3, 4)])` calls f(1, 2) and f(3, 4): `map` with each input unpacked."""
    session, argsets, kw = _prepare(self, "starmap", (iterable,), kwargs, {}, star=True)
    return map_calls(
        session,
        self.endpoint,
        self.method,
        argsets,
        kw,
        order_outputs=order_outputs,
        return_exceptions=return_exceptions,
        **_progress_of(self, (iterable,)),
    )


def _starmap_aio(
    self: Any,
    iterable: Iterable[Any],
    /,
    *,
    kwargs: dict[str, Any] | None = None,
    order_outputs: bool = True,
    return_exceptions: bool = False,
) -> AsyncIterator[Any]:
    session, argsets, kw = _prepare(self, "starmap", (iterable,), kwargs, {}, star=True)
    return map_calls_async(
        session,
        self.endpoint,
        self.method,
        argsets,
        kw,
        order_outputs=order_outputs,
        return_exceptions=return_exceptions,
        **_progress_of(self, (iterable,)),
    )


def _for_each(
    self: Any,
    *iterables: Iterable[Any],
    kwargs: dict[str, Any] | None = None,
    ignore_exceptions: bool = False,
) -> None:
    """`map` for the side effects: waits for every call, returns None; a failure raises
    `slipstream.MapError` after all calls ran (none with `ignore_exceptions=True`)."""
    session, argsets, kw = _prepare(self, "for_each", iterables, kwargs, {})
    for _ in map_calls(
        session,
        self.endpoint,
        self.method,
        argsets,
        kw,
        order_outputs=False,
        return_exceptions=ignore_exceptions,
        **_progress_of(self, iterables),
    ):
        pass


async def _for_each_aio(
    self: Any,
    *iterables: Iterable[Any],
    kwargs: dict[str, Any] | None = None,
    ignore_exceptions: bool = False,
) -> None:
    session, argsets, kw = _prepare(self, "for_each", iterables, kwargs, {})
    async for _ in map_calls_async(
        session,
        self.endpoint,
        self.method,
        argsets,
        kw,
        order_outputs=False,
        return_exceptions=ignore_exceptions,
        **_progress_of(self, iterables),
    ):
        pass


from ..endpoint import Form  # noqa: E402

MAP = Form(_map, _map_aio)
STARMAP = Form(_starmap, _starmap_aio)
FOR_EACH = Form(_for_each, _for_each_aio)
