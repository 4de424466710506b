"""The SDK's side of a call: find (or start) the runtime, sync the code once, call, meter."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..endpoint import IN_RUNTIME_ENV
from ..protocol.errors import (
    EndpointTimeout,
    ErrorInfo,
    Overloaded,
    RuntimeUnavailable,
    SlipstreamError,
    WorkerCrashed,
    rebuild,
)
from ..protocol.kinds import ErrorKind
from .client import UNREADABLE_RESULT, CallOutcome, RuntimeClient, UnknownEndpoint
from .config import (
    find_project_root,
    import_paths,
    load_project,
    module_import_root,
    project_key,
)
from .recovery import RuntimeWatch, once_more, recover
from .runtimes import configured_or_embedded
from .secretvals import with_secrets

if TYPE_CHECKING:
    from ..endpoint import Endpoint
    from .embedded import EmbeddedRuntime
    from .routing import RoutedClients

__all__ = ["Session", "current", "spend"]

_T = TypeVar("_T")

_KIND_TO_ERROR: dict[str, type[SlipstreamError]] = {
    ErrorKind.CRASH: WorkerCrashed,
    ErrorKind.TIMEOUT: EndpointTimeout,
    ErrorKind.OVERLOADED: Overloaded,
}


# A long-lived process (a REPL, a notebook, a script's loop) calls what is saved: before a call,
# at most once per RESCAN_S (longer for a tree that takes long to stat), the project's files are
# stat'ed, and only if one changed is the project synced again (sync.scan_stamp).
RESCAN_S = 0.5
_SCAN_SHARE = 20  # a scan that takes t seconds runs at most every _SCAN_SHARE * t


def _say(msg: str) -> None:
    print(f"slipstream: {msg}", file=sys.stderr, flush=True)


class Session:
    def __init__(self) -> None:
        self.client: RuntimeClient | None = None
        self.embedded: EmbeddedRuntime | None = None
        self.routed: RoutedClients | None = (
            None  # [runtimes] in slipstream.toml: several runtimes (routing.py)
        )
        self.root: Path | None = None
        self.paths: list[str] | None = None  # folders inside root this process imports from
        self.project: str | None = None  # the key the runtime keeps this project under
        self.synced_gen: str | None = None
        self.spend_usd = 0.0
        self.busy_s = 0.0
        self.calls = 0
        self._notes: set[str] = set()
        self._lock = threading.RLock()
        self._variants: list[Endpoint] = []  # with_options variants registered on the runtime
        self._aborts = 0  # bumped when calls in flight are abandoned (Ctrl-C): never retry those
        self._stamp: int | None = None  # sync.scan_stamp of the files as last synced
        self._rescan_at = math.inf  # when the next call looks for saved changes (never: inf)
        # a dev session attached to the project while this process lives (sdk/attach.py): its
        # endpoints keep a warm worker; detach() ends it
        self._attach = not os.environ.get(IN_RUNTIME_ENV)

    # --- connection and sync ----------------------------------------------------------
    def _root_for(self, ep: Endpoint) -> Path:
        """The project root as this process's Python sees it: the folder the endpoint's module
        was imported from (its __name__ and file say which), or the config's root above it.
        Sets self.paths: the folders inside the root this process imports from."""
        src, name = ep.source_file, ep.__module__
        if not (src and Path(src).exists()):
            main = sys.modules.get("__main__")
            src, name = getattr(main, "__file__", None), "__main__"
        if not src:
            root = Path.cwd().resolve()
            self.paths = import_paths(root)
            return root
        if (
            name == "__main__"
        ):  # `python -m pkg.mod` names the module in its spec; a script is its folder
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            name = getattr(spec, "name", None) or ""
        imported_from = (module_import_root(name, src) if name else None) or Path(
            src
        ).resolve().parent
        root = find_project_root(src, imported_from)
        on_path = [
            Path(p or os.getcwd())
            for p in sys.path
            if "site-packages" not in p and "dist-packages" not in p
        ]
        self.paths = import_paths(root, [imported_from, *on_path])
        return root

    def ensure(self, ep: Endpoint) -> RuntimeClient:
        with self._lock:
            if (
                self.routed is not None and self.routed.stale()
            ):  # a worker whose runtime got a new routing table
                self.routed.close()
                self.routed = None
            if self.client is None and self.routed is None:
                self.root = self._root_for(ep)
                self.project = project_key(self.root)
                from .routing import RoutedClients

                cfg = load_project(self.root)
                # [runtimes] in slipstream.toml: each endpoint on the runtime with its GPU (routing.py)
                self.routed = RoutedClients.open(cfg, self.project, self.paths, self.note)
                if self.routed is not None and self._attach:
                    self.routed.attach_as = "sdk"  # each runtime it reaches holds the project
                if (
                    self.routed is None
                ):  # one runtime: the configured one, else the embedded one (runtimes.py)
                    chosen = configured_or_embedded(self.root, cfg, export=True)
                    self.embedded = chosen.embedded
                    self.client = RuntimeClient(chosen.url, chosen.token, project=self.project)
                # else clients are made per runtime, as endpoints are routed (below)
            if self.routed is not None:  # the runtime that has the endpoint's GPU (routing.py)
                if self.routed.generation is None and self.routed.self_name is None:
                    self._stamp = self._scan()  # before its first sync, which ensure() runs
                elif time.monotonic() >= self._rescan_at:
                    self._rescan()
                client = self.routed.ensure(ep.spec.gpu, ep.spec.runtime, ep.name, self._known())
                self.synced_gen = self.routed.generation or "runtime"
                if ep.variant_of is not None and ep.registered_gen != self.synced_gen:
                    self._register_variant(ep, client)
                return client
            if self.synced_gen is None:
                self._sync()
            elif time.monotonic() >= self._rescan_at:
                self._rescan()
            if ep.variant_of is not None and ep.registered_gen != self.synced_gen:
                self._register_variant(ep)
            assert self.client is not None  # one runtime: made above
            return self.client

    def _known(self) -> list[tuple[Any, str | None, str]]:
        """The endpoints this process defined, as routing needs them: (gpu, runtime=, name)."""
        from ..endpoint import registry

        return [(e.spec.gpu, e.spec.runtime, e.name) for e in registry().values()]

    def _register_variant(self, ep: Endpoint, client: RuntimeClient | None = None) -> None:
        """f.with_options(...): the runtime makes the variant's pool (again after a deploy)."""
        client = client or self.client
        assert client is not None and ep.variant_of is not None
        if ep not in self._variants:
            self._variants.append(ep)
        r = client._request(
            "POST",
            f"/v1/projects/{self.project}/endpoints/{ep.variant_of.name}/variants",
            json=ep.variant_options,
        )
        if r.status_code >= 400:
            from .client import _message

            raise SlipstreamError(
                f"{ep.variant_of.name}.with_options({ep.variant_options}) was refused by the runtime: {_message(r)}"
            )
        ep.registered_gen = self.synced_gen

    def _scan(self) -> int:
        """The project's scan_stamp now; schedules the next scan."""
        from . import sync

        assert self.root is not None
        started = time.monotonic()
        stamp = sync.scan_stamp(self.root)
        now = time.monotonic()
        self._rescan_at = now + max(RESCAN_S, _SCAN_SHARE * (now - started))
        return stamp

    def _rescan(self) -> None:
        """Sync again if a file of the project was saved, added or removed since the last sync.
        A save the runtime refuses (a syntax error, a failed install) is said once, and calls
        go on running the last code that deployed, as under `slipstream dev`, until the files
        change again."""
        from ..protocol.errors import DeployError

        stamp = self._scan()
        if stamp == self._stamp:
            return
        previous = self.synced_gen
        try:
            self.resync(stamp)
        except DeployError as exc:
            self.synced_gen, self._stamp = previous, stamp
            where = f"{exc.file}:{exc.line}: " if exc.file else ""
            _say(
                f"the saved code was refused ({where}{exc.type}: {exc.message.splitlines()[0] if exc.message else ''}); "
                f"calls run the last code that deployed ({previous}) until you fix it and save"
            )

    def _sync(self, stamp: int | None = None) -> None:
        assert self.client is not None and self.root is not None
        if os.environ.get(IN_RUNTIME_ENV):
            # an endpoint calling another: the runtime already runs this code, and a worker
            # still finishing on an older generation must never push that code back
            self.synced_gen = "runtime"
            return
        from . import sync

        stamp = self._scan() if stamp is None else stamp  # before: a save during it is seen next
        res = sync.sync_project(
            self.client,
            self.root,
            progress=lambda line: _say(line) if line else None,
            paths=self.paths,
        )
        self.synced_gen = res.generation
        self._stamp = stamp
        if self._attach:
            self.client.attach(self.project, "sdk")  # once: later calls do nothing
        for line in res.skipped:
            self.note(line, f"not synced: {line}")

    def resync(self, stamp: int | None = None) -> None:
        """Sync the project again (a runtime that restarted, files saved since); stamp: the
        files' scan_stamp, when the caller just took it."""
        with self._lock:
            if self.routed is not None:
                if self.routed.self_name is None:
                    stamp = self._scan() if stamp is None else stamp
                self.routed.resync(self._known())
                self.synced_gen = self.routed.generation or "runtime"
                self._stamp = stamp
                return
            self.synced_gen = None
            self._sync(stamp)
            for v in self._variants:  # a deploy dropped their pools
                self._register_variant(v)

    def detach(self) -> None:
        """End this process's dev session: its project's workers stop after their idle_timeout
        from now on, as with no session (the runtime still serves later calls)."""
        with self._lock:
            self._attach = False
            if self.client is not None:
                self.client.detach()
            if self.routed is not None:
                self.routed.attach_as = None
                for c in self.routed.clients.values():
                    c.detach()

    def note(self, key: str, text: str) -> None:
        if key not in self._notes:
            self._notes.add(key)
            _say(text)

    # --- calls ------------------------------------------------------------------------
    def _with_retry(
        self, ep: Endpoint, fn: Callable[[RuntimeClient], _T], watch: RuntimeWatch | None = None
    ) -> _T:
        """fn(client), once more after the runtime restarted or went away; `watch`: the lost
        runtime's deadline the calls of one map share (recovery.RuntimeWatch)."""
        if watch is not None:
            watch.check()
        client = self.ensure(ep)
        aborts = self._aborts
        # a call whose connection was closed on purpose (Ctrl-C) is cancelled, not retried
        return once_more(
            lambda: fn(client),
            lambda exc: self._recover(client, exc, watch),
            cancelled=lambda: self._aborts != aborts,
        )

    def abort(self) -> None:
        """Abandon every call in flight (after Ctrl-C): their connections close, so the runtime
        drops or interrupts them, and none is retried."""
        self._aborts += 1
        if self.client is not None:
            self.client.abort()
        if self.routed is not None:
            self.routed.abort()

    def _recover(
        self, client: RuntimeClient, exc: SlipstreamError, watch: RuntimeWatch | None = None
    ) -> None:
        """Before retrying a failed call once: the runtime restarted (or another client deployed
        other code), so wait for it to answer and sync this project to it again."""
        embedded = self.embedded is not None or (
            self.routed is not None and self.routed.is_embedded(client)
        )
        # recovery.py: the daemon's Run does the same
        recover(client, exc, self.resync, embedded=embedded, watch=watch)

    def call(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self.ensure(ep)
        kwargs = with_secrets(ep, kwargs, self.root)  # a missing secret fails here, before the call
        timeout = ep.spec.timeout + 30
        out = self._with_retry(ep, lambda c: c.call(ep.name, method, args, kwargs, timeout=timeout))
        return self._finish(ep, out)

    async def call_async(
        self,
        ep: Endpoint,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ran_on: Callable[[str], None] | None = None,
        watch: RuntimeWatch | None = None,
    ) -> Any:
        if watch is not None:
            watch.check()
        client = await asyncio.to_thread(self.ensure, ep)
        kwargs = with_secrets(ep, kwargs, self.root)
        timeout = ep.spec.timeout + 30
        try:
            out = await client.call_async(ep.name, method, args, kwargs, timeout=timeout)
        except (UnknownEndpoint, RuntimeUnavailable) as exc:
            await asyncio.to_thread(self._recover, client, exc, watch)
            out = await client.call_async(ep.name, method, args, kwargs, timeout=timeout)
        return self._finish(ep, out, ran_on)

    def stream(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        client = self.ensure(ep)
        kwargs = with_secrets(ep, kwargs, self.root)
        produced = False
        for attempt in (0, 1):
            try:
                for kind, value in client.stream(
                    ep.name, method, args, kwargs, timeout=ep.spec.timeout + 30
                ):
                    if kind == "item":
                        produced = True
                        yield value
                    else:
                        self._finish(ep, value)
                return
            except (UnknownEndpoint, RuntimeUnavailable) as exc:
                if produced or attempt:
                    raise  # items already went out: a retry would repeat them
                self._recover(client, exc)

    async def stream_async(
        self, ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """`async for item in f.aio(...)` of a generator endpoint: items as the worker yields them."""
        client = await asyncio.to_thread(self.ensure, ep)
        kwargs = with_secrets(ep, kwargs, self.root)
        produced = False
        for attempt in (0, 1):
            try:
                async for kind, value in client.stream_async(
                    ep.name, method, args, kwargs, timeout=ep.spec.timeout + 30
                ):
                    if kind == "item":
                        produced = True
                        yield value
                    else:
                        self._finish(ep, value)
                return
            except (UnknownEndpoint, RuntimeUnavailable) as exc:
                if produced or attempt:
                    raise  # items already went out: a retry would repeat them
                await asyncio.to_thread(self._recover, client, exc)

    def _finish(
        self, ep: Endpoint, out: CallOutcome, ran_on: Callable[[str], None] | None = None
    ) -> Any:
        """The call's logs printed, its cost metered and on `ep.last_call` (`ran_on` is told
        the generation it ran on: a map's account), its value or its exception raised."""
        from ..endpoint import CallInfo

        for log in out.logs:
            stream = sys.stderr if log.get("stream") == "stderr" else sys.stdout
            stream.write(log.get("text", ""))
        if out.meta:
            info = CallInfo(
                endpoint=ep.name,
                duration_s=float(out.meta.get("duration_s", 0.0)),
                cost_usd=float(out.meta.get("cost_usd", 0.0)),
                gpu=out.meta.get("gpu", ""),
                device=out.meta.get("device", ""),
                worker=out.meta.get("worker", ""),
                generation=out.meta.get("generation", ""),
            )
            ep.last_call = info
            if ran_on is not None:
                ran_on(info.generation)
            with self._lock:
                self.spend_usd += info.cost_usd
                self.busy_s += info.duration_s
                self.calls += 1
            note = out.meta.get("note")
            if note:
                self.note(note, note + " (costs show what that GPU would bill)")
        if out.error is not None:
            if out.error.type == UNREADABLE_RESULT and not out.error.message.startswith(ep.name):
                out.error.message = f"{ep.name} ran, but {out.error.message}"
            raise self._exception(out.error)
        return out.value

    def _exception(self, info: ErrorInfo) -> BaseException:
        if info.kind == ErrorKind.BAD_REQUEST:
            exc = TypeError(info.message)
            exc._slipstream_refused = True  # type: ignore[attr-defined]  # slipstream run shows the caller's line only
            return exc
        cls = _KIND_TO_ERROR.get(info.kind)
        if cls is not None:
            return cls(info.message)
        if info.kind in (ErrorKind.UNAVAILABLE, ErrorKind.BAD_RESPONSE) and not info.pickled:
            return SlipstreamError(info.message)
        return rebuild(info, self.root)

    def close(self) -> None:
        if self.client is not None:
            self.abort()  # a call still in flight (another thread, after Ctrl-C) is cancelled
            self.client.close()
        if self.embedded is not None:
            self.embedded.stop()
        if self.routed is not None:
            self.routed.abort()
            self.routed.close()


_session: Session | None = None
_session_lock = threading.Lock()


def current() -> Session:
    global _session
    with _session_lock:
        if _session is None:
            _session = Session()
        return _session


def spend() -> dict[str, float]:
    """What this process's calls cost so far (busy seconds priced per GPU asked for)."""
    s = current()
    return {"cost_usd": s.spend_usd, "busy_s": s.busy_s, "calls": s.calls}
