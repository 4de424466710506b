"""The `slipstream` command: serve, run, dev, status, logs, daemon."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import secrets
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .protocol import envvars
from .protocol.messages import stale_text

if TYPE_CHECKING:
    from .server.backend import Backend

__all__ = ["main"]

MB = 1024 * 1024


def _err(msg: str) -> None:
    print(f"slipstream: {msg}", file=sys.stderr, flush=True)


def cmd_serve(a: argparse.Namespace) -> int:
    from . import __version__
    from .protocol.hosts import is_loopback
    from .server.app import serve
    from .server.service import Runtime
    from .server.sockets import bind_socket
    from .server.store import Limits

    if a.token_file:  # the token from a file (0600), never on a command line or in the log
        try:
            token_from_file = Path(a.token_file).read_text().strip()
        except OSError as exc:
            _err(f"cannot read --token-file {a.token_file}: {exc.strerror}")
            return 2
        if not token_from_file:
            _err(
                f"--token-file {a.token_file} is empty: write a token into it (e.g. openssl rand -hex 24)"
            )
            return 2
        os.environ[envvars.TOKEN] = token_from_file
    idle_stop = 0.0
    if a.idle_stop:
        from .server.idle import parse_duration

        try:
            idle_stop = parse_duration(a.idle_stop)
        except ValueError as exc:
            _err(f"--idle-stop: {exc}")
            return 2
    from .server.sessions import DEFAULT_LEASE_S

    session_lease = DEFAULT_LEASE_S
    lease_text = a.session_lease or os.environ.get(envvars.SESSION_LEASE)
    if lease_text:
        from .server.idle import parse_duration

        try:
            session_lease = parse_duration(lease_text)
        except ValueError as exc:
            _err(f"--session-lease: {exc}")
            return 2
    token = a.token or os.environ.get(envvars.TOKEN)
    generated = not token
    if not is_loopback(a.host) and generated:
        _err(
            f"refusing to listen on {a.host} without a token: pass --token or set SLIPSTREAM_TOKEN"
        )
        return 2
    token = token or secrets.token_urlsafe(24)
    try:
        sock = bind_socket(a.host, a.port)
    except OSError as exc:
        _err(f"cannot listen on {a.host}:{a.port}: {exc.strerror}; pick another --port")
        return 2
    if a.data_port:  # pinned (a firewall, a forwarded port): said now, not from inside the server
        try:
            bind_socket(a.host, a.data_port).close()
        except OSError as exc:
            _err(
                f"cannot listen on {a.host}:{a.data_port} for the data channel: {exc.strerror}; "
                "pick another --data-port"
            )
            return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if bool(a.tls_cert) != bool(a.tls_key):
        _err(
            "--tls-cert and --tls-key go together (the certificate chain and its private key, PEM files)"
        )
        return 2
    scheme = "https" if a.tls_cert else "http"
    if a.tls_cert:
        from .server.sockets import tls_server_context

        try:
            tls_server_context(a.tls_cert, a.tls_key)
        except ValueError as exc:
            _err(f"cannot serve HTTPS: {exc}")
            return 2
    url = f"{scheme}://{shown}:{port}"
    backend: Backend | None = None
    if a.backend == "ray":
        try:
            from .server.ray_backend import RayBackend
        except ImportError as exc:
            _err(f"the ray backend needs ray: pip install 'slipstream[ray]' ({exc})")
            return 2
        backend = RayBackend(address=a.ray_address)
    elif a.worker_memory_mb:
        from .server.pools import LocalBackend

        backend = LocalBackend(memory_limit=a.worker_memory_mb * 1024 * 1024)
    store, note = _store_folder(a)
    if store is False:
        return 2
    if not a.embedded:
        os.environ.setdefault("HF_HOME", str(hf_home_default()))  # weights download once per host
    rt = Runtime(
        store_dir=store if isinstance(store, Path) else None,
        backend=backend,
        embedded=a.embedded,
        gpu_fallback=a.gpu_fallback,
        url=url,
        token=token,
        max_queue=a.max_queue,
        limits=Limits(max_file_bytes=a.max_file_mb * MB, max_total_bytes=a.max_project_mb * MB),
        fork=not a.no_fork,
        session_lease=session_lease,
    )
    gpus = (
        ", ".join(f"{d.name} ({d.memory_gb:g} GB)" for d in rt.devices)
        or "none (endpoints that ask for a GPU "
    )
    gpus += (
        ""
        if rt.devices
        else (
            "run on the CPU)"
            if rt.gpu_fallback
            else "are refused; --gpu-fallback runs them on the CPU)"
        )
    )

    def ready() -> None:
        if a.ready_file:
            tmp = Path(a.ready_file + ".tmp")
            temp_store = (
                str(rt.store.root) if rt._tmp is not None else None
            )  # removed by whoever started us
            tmp.write_text(
                json.dumps(
                    {
                        "url": url,
                        "pid": os.getpid(),
                        "runtime_id": rt.id,
                        "temp_store": temp_store,
                        "data_port": rt.data_port,
                        "version": __version__,
                    }
                )
            )
            os.replace(tmp, a.ready_file)
        if not a.embedded:
            print(f"Slipstream runtime {url}  backend={rt.backend.name}  GPUs: {gpus}", flush=True)
            if generated:
                print(f"token (generated): {token}", flush=True)
            print(f"  export SLIPSTREAM_RUNTIME_URL={url}", flush=True)
            print(
                f"  code store: {rt.store.root}{note}  model cache (HF_HOME): {os.environ.get('HF_HOME')}",
                flush=True,
            )

    if a.parent_pid:
        _exit_with_parent(a.parent_pid)
    from .server.pools import Pool

    Pool.cancel_grace = a.cancel_grace
    from .server.calls import CallRegistry

    CallRegistry.ttl = a.call_ttl
    if a.tls_cert:
        rt.tls_ca = str(Path(a.tls_cert).resolve())
    # uvicorn stops on SIGTERM, then raises the signal again for the handler it found: with the
    # default one the process would die before the runtime stops its workers and removes its
    # temporary store. This one unwinds through serve's clean-up instead, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    asyncio.run(
        serve(
            rt,
            sock,
            token,
            log_level=a.log_level,
            on_ready=ready,
            tls_cert=a.tls_cert,
            tls_key=a.tls_key,
            idle_stop=idle_stop,
            data_port=a.data_port,
        )
    )
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def slipstream_home() -> Path:
    """Where a served runtime keeps what outlives it: $SLIPSTREAM_HOME, else ~/.slipstream
    (on a pod, point it at the persistent volume, e.g. /workspace/.slipstream)."""
    return Path(os.environ.get(envvars.HOME) or Path.home() / ".slipstream")


def hf_home_default() -> Path:
    """The model hub cache a served runtime (and its workers) use when HF_HOME is unset:
    $SLIPSTREAM_HOME/hf when SLIPSTREAM_HOME is set (a pod's volume), else the hub's own
    persistent default (~/.cache/huggingface), so weights already there are not fetched again."""
    if os.environ.get(envvars.HOME):
        return slipstream_home() / "hf"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"


_store_lock: int | None = None  # held for the process's life: one runtime per store folder


def _store_folder(a: argparse.Namespace) -> tuple[Path | None | bool, str]:
    """The served runtime's code store: --store, $SLIPSTREAM_STORE, else <home>/store, locked for
    this process. None: a temporary one (--temp-store, the embedded runtime, or the default
    folder already used by another runtime); False: refused (the message is printed)."""
    global _store_lock
    import fcntl

    if a.embedded or a.temp_store:
        return None, " (temporary)"
    explicit = a.store or os.environ.get(envvars.STORE)
    folder = Path(explicit or slipstream_home() / "store").expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        _err(
            f"cannot use {folder} as the code store: {exc.strerror or exc}; pass --store FOLDER or --temp-store"
        )
        return False, ""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        if explicit:
            _err(
                f"another runtime on this host uses the store {folder}; give this one its own --store"
            )
            return False, ""
        _err(
            f"another runtime on this host uses {folder}; this one keeps its code in a temporary folder "
            "(lost when it stops: pass --store FOLDER to keep it)"
        )
        return None, " (temporary: the default store is in use)"
    _store_lock = fd
    return folder, ""


def _exit_with_parent(pid: int) -> None:
    """Shut down (workers included) when the process that started us is gone."""
    import signal
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def cmd_run(a: argparse.Namespace) -> int:
    script = Path(a.script)
    if not script.is_file():
        _err(f"no such script: {script}")
        return 2
    from .protocol.errors import DeployError
    from .sdk import session
    from .sdk.config import find_project_root

    root = find_project_root(script)
    if (
        a.debug
    ):  # breakpoint() in endpoint code waits for a debugger (the runtime's workers inherit it)
        os.environ[envvars.DEBUG_BREAKPOINTS] = "1"
    chosen = _chosen_runtime(root)  # the configured runtime, else the embedded one, started here
    embedded = chosen.embedded if chosen is not None else None
    configured = None if chosen is None or chosen.is_embedded else (chosen.url, chosen.token)
    watcher = None
    if a.debug and chosen is None:
        _err(
            "--debug: with [runtimes] in slipstream.toml, stop at breakpoints with the editor's Debug lens"
        )
    elif a.debug:
        watcher = _debug_watcher(a, root, configured)
    sys.argv = [str(script), *a.args]
    sys.path.insert(0, str(script.resolve().parent))
    os.environ.setdefault(
        envvars.PROGRESS, "1"
    )  # a long .map shows its progress on stderr (progress.py)
    code, interrupted, failure = 0, False, ""
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code not in (None, 0) and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except (
        KeyboardInterrupt
    ):  # Ctrl-C: the script stops, its calls are cancelled, the runtime stops
        code, interrupted = 130, True
    except (
        DeployError
    ) as exc:  # the runtime refused the code: its own message says where and what to do
        where = (
            f" ({exc.file}:{exc.line})"
            if exc.file and exc.line
            else f" ({exc.file})"
            if exc.file
            else ""
        )
        _err(f"the runtime refused the code{where}: {exc.type}: {exc.message}")
        code = 1
    except Exception as exc:  # the script failed: its traceback, as `python script.py` shows it
        code, failure = 1, _script_traceback(exc)
    finally:
        import signal

        def again(
            *_: object,
        ) -> None:  # Ctrl-C again while stopping: stopping goes on (bounded), no traceback
            _err("stopping the script's calls and the embedded runtime (a few seconds at most)")

        import threading

        main = (
            threading.current_thread() is threading.main_thread()
        )  # signal handlers: main thread only
        previous = signal.signal(signal.SIGINT, again) if main else None
        try:
            if watcher is not None:
                watcher.stop()
            s = session.current()
            if s.calls:
                _err(
                    f"{s.calls} remote call(s), {s.busy_s:.2f} busy s, ${s.spend_usd:.6f} at GPU prices"
                )
            s.close()
            if embedded is not None:
                embedded.stop()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        if interrupted:
            _err(
                "interrupted: the script's remote calls were cancelled"
                + ("; the embedded runtime stopped" if embedded else "")
            )
    if failure:
        print(failure, end="", file=sys.stderr, flush=True)
    return code


def _debug_watcher(a: argparse.Namespace, root: Path, configured: tuple[str, str] | None):
    """run --debug: a relay and a how-to-attach message for each call stopped at breakpoint()."""
    from .sdk.client import RuntimeClient
    from .sdk.debug import BreakpointWatcher

    if configured:
        _err(
            "--debug: breakpoint() waits for a debugger on runtimes started with SLIPSTREAM_DEBUG_BREAKPOINTS=1 "
            "(the embedded one `run` starts is); the Debug lens works on any runtime"
        )
    url, token = configured or (os.environ[envvars.RUNTIME_URL], os.environ[envvars.TOKEN])
    return BreakpointWatcher(RuntimeClient(url, token), str(root), a.debug_port).start()


def _script_traceback(exc: BaseException) -> str:
    """exc's traceback without `slipstream run`'s own frames above the script (this module,
    runpy) and, for what the SDK raises on purpose (a runtime's answer: the endpoint's own
    exception, a refused call, a runtime that does not answer), without the SDK's frames below
    the user's line. An unexpected error inside Slipstream keeps its frames."""
    import traceback

    from .protocol.errors import RemoteTraceback, SlipstreamError
    from .spec.endpoint_spec import SpecError

    pkg = str(Path(__file__).resolve().parent) + os.sep

    def ours(fs: traceback.FrameSummary) -> bool:
        return fs.filename.startswith(pkg) or fs.filename in ("<frozen runpy>", runpy.__file__)

    def trim(te: traceback.TracebackException, e: BaseException | None, seen: set[int]) -> None:
        if id(te) in seen:
            return
        seen.add(id(te))
        frames = list(te.stack)
        while frames and ours(frames[0]):
            frames.pop(0)
        on_purpose = (
            isinstance(e, (SlipstreamError, SpecError))
            or isinstance(getattr(e, "__cause__", None), RemoteTraceback)
            or getattr(e, "_slipstream_refused", False)
        )
        while on_purpose and frames and ours(frames[-1]):
            frames.pop()
        if frames:
            te.stack = traceback.StackSummary.from_list(frames)
        if te.__cause__ is not None:
            trim(te.__cause__, getattr(e, "__cause__", None), seen)
        if te.__context__ is not None:
            trim(te.__context__, getattr(e, "__context__", None), seen)

    te = traceback.TracebackException.from_exception(exc)
    trim(te, exc, set())
    return "".join(te.format())


def _chosen_runtime(root: Path) -> Any:
    """sdk/runtimes.configured_or_embedded for `run` (an embedded runtime goes in the environment,
    for the script's session), or None when slipstream.toml's [runtimes] routes the endpoints
    (the script's session does; an embedded runtime started here would take every call); a URL
    or slipstream.toml that cannot be used is one line on stderr and exit code 2."""
    from .sdk.config import load_project
    from .sdk.runtimes import configured_or_embedded, routes_over_several

    try:
        project = load_project(root)
        if routes_over_several(project):
            return None
        return configured_or_embedded(root, project, export=True)
    except ValueError as exc:
        _err(str(exc))
        raise SystemExit(2) from None


def _configured_runtime(root: Path) -> tuple[str, str] | None:
    """SLIPSTREAM_RUNTIME_URL or slipstream.toml's runtime (url, token), else None; a URL or
    slipstream.toml that cannot be used is one line on stderr and exit code 2."""
    from .sdk.config import load_project, runtime_from_env

    try:
        return runtime_from_env(load_project(root))
    except ValueError as exc:
        _err(str(exc))
        raise SystemExit(2) from None


def _client():
    from .sdk.client import RuntimeClient
    from .sdk.config import find_project_root
    from .sdk.runtimes import running_embedded

    root = find_project_root(Path.cwd())
    # else the embedded runtime `slipstream dev` or a script runs for this folder's project
    target = _configured_runtime(root) or running_embedded(root)
    if not target:
        _err(
            "no runtime configured: set SLIPSTREAM_RUNTIME_URL and SLIPSTREAM_TOKEN (see `slipstream serve`), "
            "or run this in a project folder while `slipstream dev` runs there"
        )
        raise SystemExit(2)
    return RuntimeClient(*target)


def _answered(fn):
    """A CLI command that talks to a runtime: a refused token, an unknown endpoint or a runtime
    that does not answer is one line on stderr and exit code 1, never a traceback."""

    def run(a: argparse.Namespace) -> int:
        from .protocol.errors import SlipstreamError

        try:
            return fn(a)
        except SlipstreamError as exc:
            _err(str(exc))
            return 1

    return run


@_answered
def cmd_status(a: argparse.Namespace) -> int:
    routed = _routed_runtimes(find_project_root_here())
    if routed is not None:
        return _routed_status(a, *routed)
    c = _client()
    st = c.status()
    if a.json:
        print(json.dumps(st, indent=2))
        return 0
    h = st["runtime"]
    gpus = ", ".join(g["name"] for g in h["gpus"]) or "no GPU"
    print(f"{c.url}  {h['backend']}  {gpus}  spend ${st['spend']['cost_usd']:.6f}")
    for g in h.get("gpu_use") or []:  # who holds each GPU (server/allocator.py; docs/gpus.md)
        who = ", ".join(
            f"{u['project']}/{u['endpoint']} {u['worker']} {u['gb']:g} GB" for u in g["holders"]
        )
        print(
            f"  GPU {g['index']} {g['name']}  {g['reserved_gb']:g}/{g['memory_gb']:g} GB reserved  {who or 'free'}"
        )
    here = _here_key()
    projects = st.get("projects") or [
        {"key": None, "generation": h.get("generation"), "deploys": 0, "spend": st["spend"]}
    ]
    if not st["endpoints"] and not st.get("projects"):
        print("  no project deployed yet")
    for proj in projects:  # one block per project: its generation, spend and endpoints
        if proj["key"] is not None:
            mark = "  (this folder)" if proj["key"] == here else ""
            sp = proj["spend"]
            # dev sessions attached (slipstream dev, the editor, scripts): workers stay warm
            held = ", ".join(sorted({s["client"] for s in proj.get("sessions") or []}))
            attached = f"  attached ({held}): workers stay warm" if held else ""
            print(
                f"project {proj['key']}  generation {proj['generation']}  calls {sp['calls']}  ${sp['cost_usd']:.6f}{attached}{mark}"
            )
        for e in (e for e in st["endpoints"] if e.get("project") == proj["key"]):
            p, s = e["pool"], e["stats"]
            states = ",".join(w["state"] for w in p["workers"]) or "scaled to zero"
            p50 = "-" if s["p50_ms"] is None else f"{s['p50_ms']} ms"  # no call yet
            print(
                f"  {e['name']:<24} {e['gpu']:<10} workers {len(p['workers'])}/{p['max']} [{states}]  "
                f"calls {s['calls']} errors {s['errors']}  p50 {p50}  ${s['cost_usd']:.6f}"
            )
            if p.get("waiting"):
                print(f"    ⏳ {p['waiting']}")
            for stale in e.get("stale") or []:
                print(f"    ⚠ {stale_text(stale)} (slipstream rebuild {e['name']})")
    return 0


def find_project_root_here() -> Path:
    from .sdk.config import find_project_root

    return find_project_root(Path.cwd())


def _routed_runtimes(root: Path) -> tuple[Path, list[Any]] | None:
    """slipstream.toml's [runtimes] (docs/runtimes.md), unless SLIPSTREAM_RUNTIME_URL names one
    runtime; a table that cannot be used is one line on stderr and exit code 2."""
    from .sdk.config import load_project
    from .sdk.routing import RoutingError, load_runtimes

    if os.environ.get(envvars.RUNTIME_URL):
        return None
    try:
        entries = load_runtimes(load_project(root))
    except (RoutingError, ValueError) as exc:
        _err(str(exc))
        raise SystemExit(2) from None
    return None if entries is None else (root, entries)


def _routed_status(a: argparse.Namespace, root: Path, entries: list[Any]) -> int:
    """`slipstream status` of a project on several runtimes: each runtime's address, state, GPUs
    and this project's spend there, with the endpoints routed to it (sdk/routing.py decides)."""
    from .errors import SlipstreamError
    from .sdk.client import RuntimeClient
    from .sdk.config import project_key
    from .sdk.routing import Router, describe_gpus, gpus_from_health

    key = project_key(root)
    listing: dict[str, dict[str, Any]] = {}
    offline: dict[str, str] = {}

    def ask(rt: Any) -> None:
        if rt.embedded:
            return  # it runs inside `slipstream run`, `dev` and the editor, not on its own
        try:
            c = RuntimeClient(rt.url, rt.token, project=key)
            try:
                rt.reported = gpus_from_health(c.health())
                try:
                    listing[rt.name] = c.status(key)
                except SlipstreamError:  # the project is not deployed there (yet)
                    listing[rt.name] = {"endpoints": [], "projects": []}
            finally:
                c.close()
        except (SlipstreamError, OSError) as exc:
            offline[rt.name] = str(exc).splitlines()[0][:120]

    router = Router(entries, ask=ask)
    for rt in entries:
        router.gpus(rt)
    specs: dict[str, dict[str, Any]] = {}
    for st in listing.values():
        for e in st.get("endpoints", []):
            if not e.get("gpu_fallback_of"):
                specs.setdefault(e["name"], e.get("spec") or {})
    routes: dict[str, Any] = {}
    nowhere: dict[str, str] = {}
    for name, spec in sorted(specs.items()):
        try:
            routes[name] = router.route(spec.get("gpu") or (), spec.get("runtime"), name)
        except SlipstreamError as exc:  # no runtime has its GPU, or runtime= names none
            want = " or ".join(spec.get("gpu") or ()) or "CPU"
            nowhere[name] = (
                f"{want}: no runtime has it ({router.inventory_line()})"
                if spec.get("gpu") and not spec.get("runtime")
                else str(exc)
            )

    def stats(rt: Any, name: str) -> dict[str, Any]:
        return next(
            (
                e.get("stats") or {}
                for e in listing.get(rt.name, {}).get("endpoints", [])
                if e["name"] == name
            ),
            {},
        )

    def spend(rt: Any) -> float:
        st = listing.get(rt.name, {})
        proj = next((p for p in st.get("projects", []) if p.get("key") == key), None)
        return float(((proj or {}).get("spend") or {}).get("cost_usd", 0.0))

    if a.json:
        print(
            json.dumps(
                {
                    "project": key,
                    "runtimes": [
                        {
                            **rt.to_dict(),
                            "state": "embedded"
                            if rt.embedded
                            else "connected"
                            if rt.name in listing
                            else "offline",
                            "error": offline.get(rt.name),
                            "spend_usd": spend(rt),
                            "endpoints": [n for n, r in routes.items() if r.runtime is rt],
                        }
                        for rt in entries
                    ],
                    "unroutable": nowhere,
                },
                indent=2,
            )
        )
        return 0
    for rt in entries:
        gpus = describe_gpus(rt.gpus()) + (
            " (declared)" if rt.reported is None and rt.declared else ""
        )
        if rt.embedded:
            print(
                f"{rt.name:<12} embedded  (runs inside `slipstream run`, `dev` and the editor)  {gpus}"
            )
        elif rt.name in listing:
            print(f"{rt.name:<12} {rt.url}  connected  {gpus}  spend ${spend(rt):.6f}")
        else:
            print(f"{rt.name:<12} {rt.url}  offline ({offline.get(rt.name, 'not asked')})  {gpus}")
        mine = [(n, r) for n, r in routes.items() if r.runtime is rt]
        for n, r in mine:
            s = stats(rt, n)
            calls = (
                f"calls {s.get('calls', 0)} errors {s.get('errors', 0)}  ${float(s.get('cost_usd', 0.0)):.6f}"
                if s
                else "-"
            )
            print(f"  {n:<24} {r.gpu:<10} {calls}")
        if not mine:
            print("  no endpoint routed here")
    for n, why in nowhere.items():
        print(f"{n:<24} {why}")
    if not specs:
        print("no endpoint of this project deployed on a runtime that answers yet")
    return 0


def _here_key() -> str | None:
    """The project key of the folder `slipstream status` runs in (to mark it), if any."""
    from .sdk.config import find_project_root, project_key

    try:
        return project_key(find_project_root(Path.cwd()))
    except (OSError, ValueError):
        return None


@_answered
def cmd_rebuild(a: argparse.Namespace) -> int:
    """Load an endpoint's kept objects (models) again, e.g. after an edit to a class's __init__
    that a reload cannot apply to the object already built (docs/hot-reload.md)."""
    c = _client()
    here = _here_key()
    mine = [e for e in c.endpoints() if e["name"] == a.endpoint]
    if not mine:
        from .protocol.errors import SlipstreamError

        names = sorted({e["name"] for e in c.endpoints()})
        raise SlipstreamError(
            f"no endpoint named {a.endpoint!r} on the runtime at {c.url} "
            f"(endpoints: {', '.join(names) or 'none deployed yet'})"
        )
    project = here if any(e.get("project") == here for e in mine) else None
    what = (
        ", ".join(a.key)
        if a.key
        else ("its stale kept objects" if a.stale else "everything it keeps")
    )
    print(f"rebuilding {a.endpoint}: loading {what} again and re-running setup()...", flush=True)
    r = c.rebuild(a.endpoint, project, keys=a.key or None, stale=a.stale)
    if not r["workers"]:
        print(
            f"{a.endpoint} has no running worker: its next call builds everything from the saved code"
        )
        return 0
    released = ", ".join(r["released"]) or "nothing (no kept object matched)"
    print(
        f"✓ {a.endpoint}: {r['workers']} worker(s) rebuilt {released} in {r['rebuild_s']:.2f} s "
        f"({r['model_loads']} load(s))"
    )
    for err in r["errors"]:
        print(f"✗ setup() failed: {err.get('type')}: {err.get('message')}", file=sys.stderr)
    for st in r["stale"]:
        print(f"⚠ still stale: {stale_text(st)}", file=sys.stderr)
    return 1 if r["errors"] else 0


@_answered
def cmd_logs(a: argparse.Namespace) -> int:
    c = _client()
    if a.endpoint:
        names = sorted({e["name"] for e in c.endpoints()})
        if a.endpoint not in names:
            from .protocol.errors import SlipstreamError

            raise SlipstreamError(
                f"no endpoint named {a.endpoint!r} on the runtime at {c.url} "
                f"(endpoints: {', '.join(names) or 'none deployed yet'})"
            )
    try:
        for e in c.logs(a.endpoint, backlog=a.backlog):
            where = e.get("endpoint") or "runtime"
            # a worker's output comes in chunks of lines (worker/main._LogBatcher): each its prefix
            text = "".join(
                f"[{where}] {line}\n" for line in str(e.get("text", "")).rstrip().split("\n")
            )
            sys.stdout.write(text)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_dev(a: argparse.Namespace) -> int:
    from .protocol.hosts import is_loopback
    from .sdk.config import find_project_root
    from .sdk.devserver import run_dev

    access = a.token or os.environ.get(envvars.DEV_TOKEN) or None
    if not is_loopback(a.host) and not access:  # as serve: no open endpoints off this machine
        _err(
            f"refusing to serve dev on {a.host} without a token: pass --token or set "
            f"{envvars.DEV_TOKEN} (callers send Authorization: Bearer <token>)"
        )
        return 2
    if (
        not a.runtime
    ):  # a URL or slipstream.toml that cannot be used: one line, exit 2, before serving
        _configured_runtime(find_project_root(Path(a.path)))
    # uvicorn raises a SIGTERM again once it stopped: unwound as Ctrl-C is, dev's clean-up runs
    # (its session on the runtime ends, so the idle clock of its workers starts; see cmd_serve)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # --runtime, else as run and the editor: the configured runtime, else the embedded one (sdk/runtimes.py)
    return run_dev(
        Path(a.path), port=a.port, runtime_url=a.runtime, host=a.host, access_token=access
    )


def cmd_daemon(a: argparse.Namespace) -> int:
    from slipstream_daemon.server import main as daemon_main

    return daemon_main(a.args) or 0


def cmd_connect(a: argparse.Namespace) -> int:
    """Set up an SSH runtime: bootstrap the host on first use, attach, forward, measure."""
    import statistics
    import time

    from .sdk.sshlink import SshError, SshLink, parse_ssh_url

    if a.idle_stop:
        from .server.idle import parse_duration

        try:
            parse_duration(a.idle_stop)
        except ValueError as exc:
            _err(f"--idle-stop: {exc}")
            return 2
    try:
        link = SshLink(parse_ssh_url(a.host))
        link.connect(upgrade=a.upgrade, idle_stop=a.idle_stop)
    except SshError as exc:
        _err(str(exc))
        return 1
    from .sdk.client import RuntimeClient

    c = RuntimeClient(link.url, link.token)
    try:
        h = c.health()
        rtts = []
        for _ in range(5):
            t0 = time.perf_counter()
            c.health()
            rtts.append((time.perf_counter() - t0) * 1000)
    finally:
        c.close()
    gpus = (
        ", ".join(f"{g.get('name')} ({g.get('memory_gb', 0):g} GB)" for g in h.get("gpus") or [])
        or "none (CPU only)"
    )
    t = link.target
    if (
        a.json
    ):  # the editor's "Connect to a GPU machine" reads this (vscode-extension/src/connect.ts)
        from .sdk.routing import gpus_from_health

        print(
            json.dumps(
                {
                    "host": t.label,
                    "url": t.url,
                    "version": h.get("version"),
                    "gpus": gpus_from_health(h),
                    "rtt_ms": round(statistics.median(rtts), 2),
                }
            )
        )
        return 0
    print(
        f"connected to {t.label}: Slipstream {h.get('version')} (pid {link.remote.get('pid')}), "
        f"forwarded to {link.url} over ssh"
    )
    print(f"  GPUs: {gpus}")
    print(
        f"  round trip: {statistics.median(rtts):.1f} ms (median of {len(rtts)} /health calls through the tunnel)"
    )
    print(
        f'  use it: export SLIPSTREAM_RUNTIME_URL={t.url}   (or [runtime] url = "{t.url}" in slipstream.toml)'
    )
    return 0


def cmd_disconnect(a: argparse.Namespace) -> int:
    from .sdk.sshlink import SshError, SshLink, parse_ssh_url

    try:
        link = SshLink(parse_ssh_url(a.host))
        if a.stop:
            if not link.master_alive():
                link.start_master()
            stopped = link.stop_runtime()
            print(
                f"{'stopped the runtime on' if stopped else 'no runtime was running on'} {link.target.label}"
            )
        was = link.master_alive()
        link.close_master()
    except SshError as exc:
        _err(str(exc))
        return 1
    print(
        f"closed the ssh connection to {link.target.label}"
        if was
        else f"no ssh connection to {link.target.label} was open"
    )
    if not a.stop:
        print("  the runtime keeps running on the host; `slipstream disconnect --stop` stops it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="slipstream", description="Run GPU functions on a Slipstream runtime."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="start a runtime server")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument(
        "--data-port",
        type=int,
        default=0,
        help="the SDK's binary call channel's port (default: a free one, in the health's data_port)",
    )
    s.add_argument(
        "--token", help="bearer token (default: $SLIPSTREAM_TOKEN, else a generated one)"
    )
    s.add_argument("--backend", choices=["local", "ray"], default="local")
    s.add_argument(
        "--ray-address", default=None, help="Ray cluster address (default: start/attach locally)"
    )
    s.add_argument(
        "--gpu-fallback",
        action="store_true",
        help="run endpoints on what this machine has when it lacks their GPU",
    )
    s.add_argument("--embedded", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--ready-file", help=argparse.SUPPRESS)
    s.add_argument(
        "--token-file", help="read the bearer token from this file (keeps it off command lines)"
    )
    s.add_argument(
        "--idle-stop",
        default=None,
        metavar="DURATION",
        help="stop after this long with no call and no client (e.g. 30m, 2h); said in the log",
    )
    s.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    s.add_argument(
        "--store",
        help="folder for synced code, kept across restarts (default: $SLIPSTREAM_STORE, "
        "else ~/.slipstream/store, or $SLIPSTREAM_HOME/store)",
    )
    s.add_argument(
        "--temp-store",
        action="store_true",
        help="keep synced code in a temporary folder, removed at exit",
    )
    s.add_argument(
        "--tls-cert",
        help="serve HTTPS (and the SDK's data channel over TLS) with this PEM certificate chain",
    )
    s.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    s.add_argument(
        "--max-queue", type=int, default=256, help="queued calls per endpoint before answering 429"
    )
    s.add_argument("--max-file-mb", type=int, default=64, help="largest synced file")
    s.add_argument("--max-project-mb", type=int, default=512, help="largest synced project")
    s.add_argument(
        "--worker-memory-mb", type=int, default=0, help="address-space limit per worker (0: none)"
    )
    s.add_argument(
        "--no-fork", action="store_true", help="spawn every worker fresh (no fork server)"
    )
    s.add_argument(
        "--cancel-grace",
        type=float,
        default=5.0,
        help="seconds a cancelled call (its caller went away) has to stop before its worker is replaced",
    )
    s.add_argument(
        "--call-ttl",
        type=float,
        default=3600.0,
        help="seconds a spawned call's result is kept after it finishes (GET /v1/calls/{id}), then dropped",
    )
    s.add_argument(
        "--session-lease",
        default=None,
        metavar="DURATION",
        help="how long an attached dev session (slipstream dev, the editor, a script) holds its "
        "project's warm workers without a heartbeat, e.g. 60s, 2m (default: SLIPSTREAM_SESSION_LEASE, else 60s)",
    )
    s.add_argument("--log-level", default="warning")
    s.set_defaults(fn=cmd_serve)

    r = sub.add_parser(
        "run", help="run a script locally with its endpoints on a runtime (embedded by default)"
    )
    r.add_argument(
        "--debug",
        action="store_true",
        help="breakpoint() in endpoint code waits for a debugger; prints how to attach (docs/debugging.md)",
    )
    r.add_argument(
        "--debug-port",
        type=int,
        default=5678,
        help="with --debug: the 127.0.0.1 port to attach to (default 5678)",
    )
    r.add_argument("script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser(
        "dev", help="watch a project, hot-reload it on the runtime, serve it over HTTP"
    )
    d.add_argument("path", nargs="?", default=".")
    d.add_argument("--port", type=int, default=8888)
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback only; any other needs --token)",
    )
    d.add_argument(
        "--token",
        default=None,
        help="bearer token dev's HTTP endpoints require (default: $SLIPSTREAM_DEV_TOKEN; "
        "required off loopback)",
    )
    d.add_argument(
        "--runtime",
        default=None,
        help="runtime URL (default: $SLIPSTREAM_RUNTIME_URL, else [runtime] url in slipstream.toml, else start the embedded one)",
    )
    d.set_defaults(fn=cmd_dev)

    st = sub.add_parser("status", help="show the runtime's endpoints, pools and spend")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    rb = sub.add_parser(
        "rebuild",
        help="load an endpoint's kept models again and re-run its setup() (after an edit a reload cannot apply)",
    )
    rb.add_argument("endpoint")
    rb.add_argument("--key", action="append", help="only this keep() key (repeat for several)")
    rb.add_argument("--stale", action="store_true", help="only the kept objects that run old code")
    rb.set_defaults(fn=cmd_rebuild)

    lg = sub.add_parser("logs", help="follow the runtime's logs")
    lg.add_argument("endpoint", nargs="?")
    lg.add_argument("--backlog", type=int, default=50)
    lg.set_defaults(fn=cmd_logs)

    cn = sub.add_parser(
        "connect",
        help="use a GPU machine over ssh: install and start a runtime there, tunnel to it",
    )
    cn.add_argument(
        "host", help="ssh://[user@]host[:port], user@host or a Host alias from ~/.ssh/config"
    )
    cn.add_argument(
        "--upgrade", action="store_true", help="replace a runtime of another version running there"
    )
    cn.add_argument(
        "--idle-stop",
        default=None,
        metavar="DURATION",
        help="when starting the runtime: stop it after this long with no call and no client (e.g. 30m)",
    )
    cn.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON line (host, url, version, gpus, rtt_ms)",
    )
    cn.set_defaults(fn=cmd_connect)

    dc = sub.add_parser("disconnect", help="close the ssh connection to a runtime host")
    dc.add_argument("host")
    dc.add_argument("--stop", action="store_true", help="also stop the runtime on the host")
    dc.set_defaults(fn=cmd_disconnect)

    dm = sub.add_parser("daemon", help="the language server (stdio; --tcp PORT for debugging)")
    dm.add_argument("args", nargs=argparse.REMAINDER)
    dm.set_defaults(fn=cmd_daemon)
    return ap


# the extra (pyproject.toml) that brings each third-party package a command may lack:
# `pip install slipstream` is the SDK alone
EXTRA_OF = {
    "fastapi": "server",
    "starlette": "server",
    "uvicorn": "server",
    "pydantic": "server",
    "watchfiles": "server",
    "pygls": "daemon",
    "lsprotocol": "daemon",
    "libcst": "daemon",
    "debugpy": "debug",
    "websockets": "debug",
}


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return int(a.fn(a) or 0)
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        _err(
            f"this command needs {exc.name}, which is not installed here: pip install 'slipstream[{extra}]'"
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
