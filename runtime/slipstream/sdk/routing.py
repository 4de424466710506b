"""Which runtime serves which endpoint: the one source of truth for the SDK session, the CLI
(`status`, `dev`), the worker of a nested call and the language server.

A project names its runtimes in slipstream.toml::

    [runtimes.gpu-box]
    url = "ssh://me@gpu-box"      # or https://host, http://127.0.0.1:8765, or "embedded"
    gpus = ["H100"]               # declared: used while the runtime cannot be asked

    [runtimes.cloud]
    url = "https://gpu.example.com"
    token_env = "CLOUD_TOKEN"     # where its token is read from (default SLIPSTREAM_TOKEN_CLOUD)

With no [runtimes] table nothing here applies: the project talks to the one runtime
SLIPSTREAM_RUNTIME_URL or [runtime] url names, else the embedded one (runtimes.configured_or_embedded).

The rules (route()):
1. `@endpoint(..., runtime="gpu-box")` pins an endpoint to that runtime.
2. A CPU endpoint runs on the embedded runtime (one named with url = "embedded", else an
   implicit one called "local").
3. A GPU endpoint runs on the first runtime, in the table's order (the implicit "local" one
   last), that has its GPU; the decorator's fallback list is tried in its order, so
   gpu=["H100", "A100-80GB"] takes an H100 on any runtime before an A100 on the first one.
   A runtime's GPUs are what it reports (/health) when it answers, else its declared `gpus`;
   a runtime asked that did not answer is passed over while one that answered has a GPU of the
   list, and chosen only when none has (the call then fails saying it is offline).
4. No runtime has any of them: NoRuntimeForGpu, at once, naming the GPUs each runtime has.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import envvars
from ..protocol.errors import RuntimeUnavailable, SlipstreamError
from .config import CONFIG_NAME, ProjectConfig

__all__ = [
    "EMBEDDED",
    "LOCAL",
    "ROUTING_FILE_ENV",
    "RuntimeEntry",
    "Route",
    "Router",
    "RoutingError",
    "NoRuntimeForGpu",
    "load_runtimes",
    "gpus_from_health",
    "describe_gpus",
    "table_for",
    "from_file",
    "sync_all",
]

EMBEDDED = "embedded"  # the url of the embedded runtime in [runtimes.NAME]
LOCAL = "local"  # the name of the implicit embedded runtime
#: In a worker: the file holding its project's routing table (JSON, written by the runtime from
#: the last commit's `routing`, mode 0600), so an endpoint calling another routes as the client
#: did; a new table (the embedded runtime's address changes with each process) is seen at once.
ROUTING_FILE_ENV = envvars.ROUTING_FILE
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class RoutingError(SlipstreamError, ValueError):
    """slipstream.toml's [runtimes] cannot be used, or an endpoint names a runtime that is not there."""


class NoRuntimeForGpu(SlipstreamError):
    """No configured runtime has any GPU the endpoint accepts."""


@dataclass
class RuntimeEntry:
    name: str
    url: str  # "embedded", http(s)://..., ssh://...
    declared: tuple[str, ...] = ()  # canonical GPU names, one per device ("H100:2" -> H100, H100)
    token_env: str = ""
    implicit: bool = False  # the "local" embedded runtime nobody declared
    token: str = (
        ""  # filled in by whoever connects (the environment, SecretStorage, the embedded runtime)
    )
    address: str = ""  # where it answers now (the embedded runtime's loopback URL once started)
    reported: list[str] | None = (
        None  # canonical GPU names from its /health; None: not asked or no answer
    )

    @property
    def embedded(self) -> bool:
        return self.url == EMBEDDED

    def gpus(self) -> list[str]:
        """The GPUs routing counts on: reported when it answered, else declared."""
        return list(self.reported) if self.reported is not None else list(self.declared)

    def to_dict(self, with_token: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "url": self.url,
            "address": self.address,
            "gpus": self.gpus(),
            "declared": list(self.declared),
            "reported": self.reported is not None,
        }
        if with_token:
            d["token"] = self.token
        return d


@dataclass(frozen=True)
class Route:
    runtime: RuntimeEntry
    gpu: str  # the label it runs on there ("H100", "A100-80GB:2"), or "CPU"
    why: str  # "pinned" | "cpu" | "gpu"


@dataclass
class Router:
    """Routes endpoints over the runtimes; `ask(entry)` fills an entry's reported GPUs (it may
    connect, start the embedded runtime, or do nothing) and is called at most once per entry,
    only when a rule needs that runtime's GPUs."""

    runtimes: list[RuntimeEntry]
    ask: Callable[[RuntimeEntry], None] | None = None
    _asked: set[str] = field(default_factory=set)

    def get(self, name: str) -> RuntimeEntry:
        for rt in self.runtimes:
            if rt.name == name:
                return rt
        raise RoutingError(
            f"no runtime named {name!r} in [runtimes] of {CONFIG_NAME} "
            f"(runtimes: {', '.join(r.name for r in self.runtimes)}); add "
            f"[runtimes.{name}] with its url, or fix runtime= in the decorator"
        )

    @property
    def embedded(self) -> RuntimeEntry:
        return next(rt for rt in self.runtimes if rt.embedded)

    def gpus(self, rt: RuntimeEntry) -> list[str]:
        if rt.name not in self._asked and self.ask is not None:
            self._asked.add(rt.name)
            self.ask(rt)
        return rt.gpus()

    def route(
        self, gpu: Iterable[str] | str | None, pinned: str | None = None, name: str = ""
    ) -> Route:
        """Where an endpoint asking for `gpu` (the spec's labels in fallback order, e.g.
        ("H100:2", "A100-80GB"); empty for the CPU) runs. Raises RoutingError (an unknown
        pinned runtime) or NoRuntimeForGpu."""
        labels = [gpu] if isinstance(gpu, str) else list(gpu or ())
        if pinned:
            rt = self.get(pinned)
            have = self.gpus(rt) if labels else []
            on = next((lb for lb in labels if _fits(lb, have)), labels[0] if labels else "CPU")
            return Route(rt, on, "pinned")
        if not labels:
            return Route(self.embedded, "CPU", "cpu")
        for label in labels:  # the runtimes that answered (or were not asked: the editor's view)
            for rt in self.runtimes:
                if _fits(label, self.gpus(rt)) and (
                    rt.reported is not None or rt.name not in self._asked
                ):
                    return Route(rt, label, "gpu")
        for (
            label
        ) in labels:  # else one that did not answer but declares it: the call says it is offline
            for rt in self.runtimes:
                if _fits(label, rt.gpus()):
                    return Route(rt, label, "gpu")
        raise NoRuntimeForGpu(self.no_runtime_message(labels, name))

    def no_runtime_message(self, labels: list[str], name: str = "") -> str:
        who = f"endpoint {name!r}" if name else "this endpoint"
        return (
            f"{who} asks for {' or '.join(labels)} but no runtime has it: {self.inventory_line()}. "
            f"Connect a machine with that GPU (`slipstream connect HOST`, then [runtimes.NAME] url = "
            f'"ssh://HOST" in {CONFIG_NAME}), or change gpu= to one of theirs.'
        )

    def inventory_line(self) -> str:
        parts = []
        for rt in self.runtimes:
            have = self.gpus(rt)
            src = "" if rt.reported is not None or not have else " (declared; not answering)"
            parts.append(f"{rt.name} has {describe_gpus(have)}{src}")
        return "; ".join(parts)

    def table(self, self_name: str | None = None) -> dict[str, Any]:
        """What a runtime's workers get (ROUTING_FILE_ENV) so their nested calls route alike: every
        runtime's name, address, token and GPUs, and which one they run on."""
        return {
            "self": self_name,
            "runtimes": [
                {
                    "name": rt.name,
                    "url": rt.url,
                    "address": rt.address,
                    "token": rt.token,
                    "gpus": rt.gpus(),
                }
                for rt in self.runtimes
            ],
        }


def _fits(label: str, have: list[str]) -> bool:
    name, _, count = label.partition(":")
    return have.count(name) >= (int(count) if count.isdigit() else 1)


def describe_gpus(names: list[str]) -> str:
    """["H100", "H100", "L4"] -> "2×H100, L4"; [] -> "no GPU"."""
    if not names:
        return "no GPU"
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return ", ".join(f"{c}×{n}" if c > 1 else n for n, c in seen.items())


def gpus_from_health(health: dict[str, Any]) -> list[str]:
    """The canonical GPU names a runtime's /health lists, one per device (the driver's name
    where the catalog does not know the card)."""
    out = []
    for d in health.get("gpus") or []:
        if isinstance(d, dict):
            out.append(str(d.get("canonical") or d.get("name") or "GPU"))
    return out


def _declared(value: Any, where: str) -> tuple[str, ...]:
    from ..spec.catalog import catalog

    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RoutingError(
            f'{where}: gpus must be a list of GPU names, e.g. gpus = ["H100"] or ["A100-80GB:4"]'
        )
    out: list[str] = []
    for item in value:
        name, _, count = item.partition(":")
        gpu = catalog().lookup(name.strip())
        if gpu is None:
            near = catalog().nearest(name.strip())
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise RoutingError(
                f"{where}: unknown GPU {item!r}{hint}; names are the catalog's, e.g. H100, A100-80GB, L4"
            )
        if count and not count.isdigit():
            raise RoutingError(f'{where}: {item!r}: write NAME:COUNT, e.g. "H100:8"')
        out += [gpu.name] * (int(count) if count else 1)
    return tuple(out)


def load_runtimes(cfg: ProjectConfig) -> list[RuntimeEntry] | None:
    """The project's [runtimes] in the file's order, with the implicit embedded "local" one
    last when none is declared; None when slipstream.toml has no [runtimes] table. Tokens come
    from each one's token_env (default SLIPSTREAM_TOKEN_<NAME>), else SLIPSTREAM_TOKEN."""
    table = cfg.raw.get("runtimes")
    if table is None:
        return None
    where = f"{cfg.root / CONFIG_NAME}"
    if not isinstance(table, dict) or not table:
        raise RoutingError(
            f'{where}: [runtimes] must hold one table per runtime, e.g. [runtimes.gpu-box] url = "ssh://gpu-box"'
        )
    out: list[RuntimeEntry] = []
    for name, spec in table.items():
        at = f"{where}, [runtimes.{name}]"
        if not _NAME.match(name):
            raise RoutingError(
                f"{at}: a runtime's name is letters, digits, '-', '_' or '.' (at most 40)"
            )
        if not isinstance(spec, dict):
            raise RoutingError(f'{at}: write it as a table with url = "..."')
        url = spec.get("url")
        if not isinstance(url, str) or not url:
            raise RoutingError(
                f'{at}: url is missing; write url = "ssh://HOST", "https://HOST" or "embedded"'
            )
        url = url.strip().rstrip("/")
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if url != EMBEDDED and scheme not in ("http", "https", "ssh"):
            raise RoutingError(
                f'{at}: url {url!r}: write http://host:port, https://host[:port], ssh://[user@]host[:port] or "embedded"'
            )
        unknown = sorted(set(spec) - {"url", "gpus", "token_env"})
        if unknown:
            raise RoutingError(
                f"{at}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (known: url, gpus, token_env)"
            )
        token_env = (
            spec.get("token_env")
            or envvars.TOKEN_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        )
        if not isinstance(token_env, str):
            raise RoutingError(f"{at}: token_env must be the name of an environment variable")
        entry = RuntimeEntry(
            name=name, url=url, declared=_declared(spec.get("gpus"), at), token_env=token_env
        )
        if not entry.embedded:
            entry.token = os.environ.get(token_env) or os.environ.get(envvars.TOKEN, "")
        out.append(entry)
    if sum(rt.embedded for rt in out) > 1:
        raise RoutingError(f'{where}: more than one runtime has url = "embedded"; keep one')
    if not any(rt.embedded for rt in out):
        if any(rt.name == LOCAL for rt in out):
            raise RoutingError(
                f'{where}: [runtimes.{LOCAL}] is the embedded runtime\'s name: give it url = "embedded" or rename it'
            )
        out.append(RuntimeEntry(name=LOCAL, url=EMBEDDED, implicit=True))
    return out


def table_for(router: Router, runtime: RuntimeEntry) -> str:
    """The routing table sent with a commit to `runtime` (its workers read it from ROUTING_FILE_ENV)."""
    return json.dumps(router.table(runtime.name), separators=(",", ":"))


def from_file(path: str | None = None) -> tuple[Router, str | None] | None:
    """In a worker: the routing table its runtime got with the project's last commit (the file
    ROUTING_FILE_ENV names) and the name of the runtime it runs on; None outside routing (the
    worker calls its own runtime)."""
    path = path or os.environ.get(ROUTING_FILE_ENV)
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        entries = [
            RuntimeEntry(
                name=r["name"],
                url=r["url"],
                token=r.get("token", ""),
                address=r.get("address", ""),
                reported=list(r.get("gpus") or []),
            )
            for r in data["runtimes"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RoutingError(f"the routing table {path} cannot be read ({exc})") from None
    return Router(entries), data.get("self")


def sync_all(
    router: Router,
    connect: Callable[[RuntimeEntry], Any],
    root: Any,
    known: Iterable[tuple[Any, str | None, str]] = (),
    offline: dict[str, SlipstreamError] | None = None,
    **sync_kwargs: Any,
) -> dict[str, Any]:
    """Sync the project to every runtime that serves one of its endpoints; {runtime name:
    SyncResult}. `connect(entry)` gives that runtime's client (starting the embedded runtime,
    filling entry.address and entry.token). `known`: (gpu labels, pinned runtime, name) of the
    endpoints the caller knows already; the endpoints the runtimes report after a sync are
    routed too, and a runtime found serving one of them is added (and every runtime gets the
    routing table again, as it now names one more address). Endpoints no runtime can serve are
    left to fail when called (NoRuntimeForGpu), and so are those of a runtime that does not
    answer (RuntimeUnavailable, raised here only when none answered). Raises DeployError."""
    from .sync import sync_project

    def serving(endpoints: Iterable[tuple[Any, str | None, str]]) -> list[RuntimeEntry]:
        out: list[RuntimeEntry] = []
        for gpu, pinned, name in endpoints:
            try:
                rt = router.route(gpu, pinned, name).runtime
            except SlipstreamError:
                continue
            if rt not in out:
                out.append(rt)
        return out

    targets = serving(known) or [router.embedded]
    results: dict[str, Any] = {}
    offline = {} if offline is None else offline  # runtime name -> why it could not be synced
    for _ in range(len(router.runtimes) + 1):
        clients = []
        for rt in targets:  # every address is known before any table goes out
            try:
                clients.append((rt, connect(rt)))
            except RuntimeUnavailable as exc:
                offline[rt.name] = exc
        for rt, client in clients:
            client.routing = table_for(router, rt)
            try:
                results[rt.name] = sync_project(client, root, **sync_kwargs)
            except RuntimeUnavailable as exc:  # its endpoints fail when called; the others run
                offline[rt.name] = exc
        if not results and offline:
            raise next(iter(offline.values()))
        reported = [
            (
                (e.get("spec") or {}).get("gpu") or (),
                (e.get("spec") or {}).get("runtime"),
                e.get("name", ""),
            )
            for res in results.values()
            for e in res.endpoints
        ]
        more = [rt for rt in serving(reported) if rt not in targets]
        if not more:
            return results
        targets += more
    return results


class RoutedClients:
    """The SDK session's runtimes when its project routes over several: a client per runtime
    (the embedded one started on first need), the code synced to each that serves an endpoint
    (the routing table going along), and, in a worker, the table its runtime wrote."""

    def __init__(
        self,
        router: Router,
        root: Any,
        project: str | None,
        paths: list[str] | None,
        note: Callable[[str, str], None],
        self_name: str | None = None,
        table_file: str | None = None,
    ) -> None:
        self.router = router
        self.root = root
        self.project = project
        self.paths = paths
        self.note = note
        self.self_name = self_name  # in a worker: the runtime it runs on
        self.table_file = table_file
        self._stamp = _stamp(table_file) if table_file else None
        self.clients: dict[str, Any] = {}
        self.embedded: Any = None  # EmbeddedRuntime, when this process started it
        self.generation: str | None = None  # after a sync: the generations, one per runtime
        self._synced: dict[str, str] = {}  # runtime name -> generation synced to it
        self._offline: dict[
            str, SlipstreamError
        ] = {}  # runtime name -> why the last sync did not reach it
        # what attaches a dev session to the project on each runtime reached ("sdk", "dev"), or
        # None (in a worker, or detached): sdk/attach.py
        self.attach_as: str | None = None
        router.ask = self._ask

    @classmethod
    def open(
        cls,
        cfg: ProjectConfig,
        project: str | None,
        paths: list[str] | None,
        note: Callable[[str, str], None],
    ) -> RoutedClients | None:
        """The project's routing, or None when it talks to one runtime (no [runtimes] table; in
        a worker, no table from its runtime). SLIPSTREAM_RUNTIME_URL, when set, wins: one runtime."""
        if os.environ.get(envvars.IN_RUNTIME):
            path = os.environ.get(ROUTING_FILE_ENV)
            found = from_file(path)
            return (
                None
                if found is None
                else cls(found[0], cfg.root, project, paths, note, found[1], path)
            )
        entries = load_runtimes(cfg)
        if entries is None:
            return None
        if os.environ.get(envvars.RUNTIME_URL):
            note(
                "env-over-runtimes",
                f"SLIPSTREAM_RUNTIME_URL is set: every endpoint runs on {os.environ[envvars.RUNTIME_URL]}, "
                f"not on the [runtimes] of {CONFIG_NAME} (unset it to route)",
            )
            return None
        return cls(Router(entries), cfg.root, project, paths, note)

    def stale(self) -> bool:
        """In a worker: its runtime wrote a new table since (a new commit)."""
        return self.table_file is not None and _stamp(self.table_file) != self._stamp

    # --- connecting ---------------------------------------------------------------------
    def client(self, rt: RuntimeEntry) -> Any:
        c = self.clients.get(rt.name)
        if c is not None:
            return c
        from .client import RuntimeClient

        if (
            self.self_name is not None and rt.name == self.self_name
        ):  # a worker calling its own runtime
            c = RuntimeClient(
                os.environ[envvars.RUNTIME_URL],
                os.environ.get(envvars.TOKEN, ""),
                project=self.project,
            )
        elif rt.embedded and self.self_name is None and not rt.address:
            from .embedded import EmbeddedRuntime

            self.embedded = EmbeddedRuntime.start(self.root)
            rt.address, rt.token = self.embedded.url, self.embedded.token
            c = RuntimeClient(rt.address, rt.token, project=self.project)
        else:
            if not rt.address:
                rt.address = rt.url
            if rt.address == EMBEDDED:
                raise RoutingError(
                    f"runtime {rt.name!r} (the embedded one) is not running; it runs with the process that routes to it"
                )
            try:
                c = RuntimeClient(rt.address, rt.token, project=self.project)
            except SlipstreamError as exc:
                raise type(exc)(f"runtime {rt.name!r} ({rt.url}): {exc}") from None
        self.clients[rt.name] = c
        if self.attach_as is not None and self.self_name is None:
            c.attach(self.project, self.attach_as)
        return c

    def _ask(self, rt: RuntimeEntry) -> None:
        try:
            rt.reported = gpus_from_health(self.client(rt).health())
        except (SlipstreamError, OSError) as exc:
            self.note(
                f"offline:{rt.name}",
                f"runtime {rt.name!r} ({rt.url}) did not answer ({exc}); "
                f"routing counts on its declared GPUs: {describe_gpus(list(rt.declared))}",
            )

    # --- routing, syncing -----------------------------------------------------------------
    def ensure(
        self,
        gpu: Any,
        pinned: str | None,
        name: str,
        known: Iterable[tuple[Any, str | None, str]] = (),
    ) -> Any:
        """The client of the runtime serving this endpoint, the project synced to every runtime
        that serves one of its endpoints first (not in a worker: its client did that)."""
        route = self.router.route(gpu, pinned, name)
        if self.self_name is None and (
            self.generation is None or route.runtime.name not in self._synced
        ):
            self._sync([*known, (gpu, pinned, name)])
            if route.runtime.name in self._offline:
                raise RuntimeUnavailable(
                    f"endpoint {name!r} runs on runtime {route.runtime.name!r} ({route.runtime.url}), "
                    f"which does not answer: {self._offline[route.runtime.name]}"
                )
        return self.client(route.runtime)

    def _sync(self, known: list[tuple[Any, str | None, str]]) -> None:
        import sys

        def say(line: str) -> None:
            if line:
                print(f"slipstream: {line}", file=sys.stderr, flush=True)

        res = self.sync_each(known, progress=say)
        for line in res.skipped:
            self.note(line, f"not synced: {line}")

    def sync_each(self, known: Iterable[tuple[Any, str | None, str]], progress: Any = None) -> Any:
        """Sync to every runtime serving one of the project's endpoints (sync_all); the first
        one's SyncResult. A runtime that does not answer is noted, and its endpoints' calls fail."""
        self._offline = {}
        results = sync_all(
            self.router,
            self.client,
            self.root,
            known,
            self._offline,
            progress=progress,
            paths=self.paths,
        )
        self._synced = {name: res.generation for name, res in results.items()}
        self.generation = ",".join(f"{n}:{g}" for n, g in sorted(self._synced.items()))
        for name, exc in self._offline.items():
            self.note(
                f"offline:{name}:{exc}",
                f"runtime {name!r} did not answer, so the code is not synced there: {exc}",
            )
        return next(iter(results.values()))

    def synced_to(self) -> list[str]:
        return list(self._synced)

    def resync(self, known: Iterable[tuple[Any, str | None, str]] = ()) -> None:
        if self.self_name is None:
            self._sync(list(known))

    def is_embedded(self, client: Any) -> bool:
        rt = next((r for r in self.router.runtimes if self.clients.get(r.name) is client), None)
        return rt is not None and rt.embedded and self.self_name is None

    def abort(self) -> None:
        for c in self.clients.values():
            c.abort()

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
