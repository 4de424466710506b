"""The `slipstream` command: serve, run, dev, status, logs, daemon."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import secrets
import sys
from pathlib import Path

__all__ = ["main"]

MB = 1024 * 1024


def _err(msg: str) -> None:
    print(f"slipstream: {msg}", file=sys.stderr, flush=True)


def cmd_serve(a: argparse.Namespace) -> int:
    from .server import bind_socket, is_loopback, serve
    from .service import Runtime
    from .store import Limits

    token = a.token or os.environ.get("SLIPSTREAM_TOKEN")
    generated = not token
    if not is_loopback(a.host) and generated:
        _err(f"refusing to listen on {a.host} without a token: pass --token or set SLIPSTREAM_TOKEN")
        return 2
    token = token or secrets.token_urlsafe(24)
    try:
        sock = bind_socket(a.host, a.port)
    except OSError as exc:
        _err(f"cannot listen on {a.host}:{a.port}: {exc.strerror}; pick another --port")
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    backend = None
    if a.backend == "ray":
        try:
            from .ray_backend import RayBackend
        except ImportError as exc:
            _err(f"the ray backend needs ray: pip install 'slipstream[ray]' ({exc})")
            return 2
        backend = RayBackend(address=a.ray_address)
    elif a.worker_memory_mb:
        from .pools import LocalBackend

        backend = LocalBackend(memory_limit=a.worker_memory_mb * 1024 * 1024)
    store = Path(a.store) if a.store else None
    rt = Runtime(
        store_dir=store, backend=backend, embedded=a.embedded, gpu_fallback=a.gpu_fallback,
        url=url, token=token, max_queue=a.max_queue,
        limits=Limits(max_file_bytes=a.max_file_mb * MB, max_total_bytes=a.max_project_mb * MB),
        fork=not a.no_fork,
    )
    gpus = ", ".join(f"{d.name} ({d.memory_gb:g} GB)" for d in rt.devices) or "none (endpoints that ask for a GPU "
    gpus += "" if rt.devices else ("run on the CPU)" if rt.gpu_fallback else "are refused; --gpu-fallback runs them on the CPU)")

    def ready() -> None:
        if a.ready_file:
            tmp = Path(a.ready_file + ".tmp")
            temp_store = str(rt.store.root) if rt._tmp is not None else None  # removed by whoever started us
            tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "runtime_id": rt.id, "temp_store": temp_store}))
            os.replace(tmp, a.ready_file)
        if not a.embedded:
            print(f"Slipstream runtime {url}  backend={rt.backend.name}  GPUs: {gpus}", flush=True)
            if generated:
                print(f"token (generated): {token}", flush=True)
            print(f"  export SLIPSTREAM_RUNTIME_URL={url}", flush=True)

    if a.parent_pid:
        _exit_with_parent(a.parent_pid)
    from .pools import Pool

    Pool.cancel_grace = a.cancel_grace
    from .calls import CallRegistry

    CallRegistry.ttl = a.call_ttl
    asyncio.run(serve(rt, sock, token, log_level=a.log_level, on_ready=ready))
    return 0


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
    from . import session
    from .config import find_project_root, load_project, runtime_from_env
    from .embedded import EmbeddedRuntime
    from .errors import DeployError

    root = find_project_root(script)
    embedded = None
    if not runtime_from_env(load_project(root)):
        embedded = EmbeddedRuntime.start(root)
        os.environ["SLIPSTREAM_RUNTIME_URL"] = embedded.url
        os.environ["SLIPSTREAM_TOKEN"] = embedded.token
    sys.argv = [str(script), *a.args]
    sys.path.insert(0, str(script.resolve().parent))
    code, interrupted = 0, False
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code not in (None, 0) and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C: the script stops, its calls are cancelled, the runtime stops
        code, interrupted = 130, True
    except DeployError as exc:  # the runtime refused the code: its own message says where and what to do
        where = f" ({exc.file}:{exc.line})" if exc.file and exc.line else f" ({exc.file})" if exc.file else ""
        _err(f"the runtime refused the code{where}: {exc.type}: {exc.message}")
        code = 1
    finally:
        s = session.current()
        if s.calls:
            _err(f"{s.calls} remote call(s), {s.busy_s:.2f} busy s, ${s.spend_usd:.6f} at GPU prices")
        s.close()
        if embedded is not None:
            embedded.stop()
        if interrupted:
            _err("interrupted: the script's remote calls were cancelled" + ("; the embedded runtime stopped" if embedded else ""))
    return code


def _client():
    from .client import RuntimeClient
    from .config import find_project_root, load_project, runtime_from_env

    target = runtime_from_env(load_project(find_project_root(Path.cwd())))
    if not target:
        _err("no runtime configured: set SLIPSTREAM_RUNTIME_URL and SLIPSTREAM_TOKEN (see `slipstream serve`)")
        raise SystemExit(2)
    return RuntimeClient(*target)


def _answered(fn):
    """A CLI command that talks to a runtime: a refused token, an unknown endpoint or a runtime
    that does not answer is one line on stderr and exit code 1, never a traceback."""

    def run(a: argparse.Namespace) -> int:
        from .errors import SlipstreamError

        try:
            return fn(a)
        except SlipstreamError as exc:
            _err(str(exc))
            return 1

    return run


@_answered
def cmd_status(a: argparse.Namespace) -> int:
    c = _client()
    st = c.status()
    if a.json:
        print(json.dumps(st, indent=2))
        return 0
    h = st["runtime"]
    gpus = ", ".join(g["name"] for g in h["gpus"]) or "no GPU"
    print(f"{c.url}  {h['backend']}  {gpus}  spend ${st['spend']['cost_usd']:.6f}")
    here = _here_key()
    projects = st.get("projects") or [{"key": None, "generation": h.get("generation"), "deploys": 0, "spend": st["spend"]}]
    if not st["endpoints"] and not st.get("projects"):
        print("  no project deployed yet")
    for proj in projects:  # one block per project: its generation, spend and endpoints
        if proj["key"] is not None:
            mark = "  (this folder)" if proj["key"] == here else ""
            sp = proj["spend"]
            print(f"project {proj['key']}  generation {proj['generation']}  calls {sp['calls']}  ${sp['cost_usd']:.6f}{mark}")
        for e in (e for e in st["endpoints"] if e.get("project") == proj["key"]):
            p, s = e["pool"], e["stats"]
            states = ",".join(w["state"] for w in p["workers"]) or "scaled to zero"
            print(f"  {e['name']:<24} {e['gpu']:<10} workers {len(p['workers'])}/{p['max']} [{states}]  "
                  f"calls {s['calls']} errors {s['errors']}  p50 {s['p50_ms']} ms  ${s['cost_usd']:.6f}")
    return 0


def _here_key() -> str | None:
    """The project key of the folder `slipstream status` runs in (to mark it), if any."""
    from .config import find_project_root, project_key

    try:
        return project_key(find_project_root(Path.cwd()))
    except (OSError, ValueError):
        return None


@_answered
def cmd_logs(a: argparse.Namespace) -> int:
    c = _client()
    if a.endpoint:
        names = sorted({e["name"] for e in c.endpoints()})
        if a.endpoint not in names:
            from .errors import SlipstreamError

            raise SlipstreamError(
                f"no endpoint named {a.endpoint!r} on the runtime at {c.url} "
                f"(endpoints: {', '.join(names) or 'none deployed yet'})"
            )
    try:
        for e in c.logs(a.endpoint, backlog=a.backlog):
            where = e.get("endpoint") or "runtime"
            print(f"[{where}] {e.get('text', '').rstrip()}", flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_dev(a: argparse.Namespace) -> int:
    from .devserver import run_dev

    return run_dev(Path(a.path), port=a.port, runtime_url=a.runtime, host=a.host)


def cmd_daemon(a: argparse.Namespace) -> int:
    from slipstream_daemon.server import main as daemon_main

    return daemon_main(a.args) or 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="slipstream", description="Run GPU functions on a Slipstream runtime.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="start a runtime server")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", help="bearer token (default: $SLIPSTREAM_TOKEN, else a generated one)")
    s.add_argument("--backend", choices=["local", "ray"], default="local")
    s.add_argument("--ray-address", default=None, help="Ray cluster address (default: start/attach locally)")
    s.add_argument("--gpu-fallback", action="store_true", help="run endpoints on what this machine has when it lacks their GPU")
    s.add_argument("--embedded", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--ready-file", help=argparse.SUPPRESS)
    s.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    s.add_argument("--store", help="folder for synced code (default: a temp folder)")
    s.add_argument("--max-queue", type=int, default=256, help="queued calls per endpoint before answering 429")
    s.add_argument("--max-file-mb", type=int, default=64, help="largest synced file")
    s.add_argument("--max-project-mb", type=int, default=512, help="largest synced project")
    s.add_argument("--worker-memory-mb", type=int, default=0, help="address-space limit per worker (0: none)")
    s.add_argument("--no-fork", action="store_true", help="spawn every worker fresh (no fork server)")
    s.add_argument("--cancel-grace", type=float, default=5.0,
                   help="seconds a cancelled call (its caller went away) has to stop before its worker is replaced")
    s.add_argument("--call-ttl", type=float, default=3600.0,
                   help="seconds a spawned call's result is kept after it finishes (GET /v1/calls/{id}), then dropped")
    s.add_argument("--log-level", default="warning")
    s.set_defaults(fn=cmd_serve)

    r = sub.add_parser("run", help="run a script locally with its endpoints on a runtime (embedded by default)")
    r.add_argument("script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser("dev", help="watch a project, hot-reload it on the runtime, serve it over HTTP")
    d.add_argument("path", nargs="?", default=".")
    d.add_argument("--port", type=int, default=8888)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--runtime", default=None, help="runtime URL (default: start the embedded one)")
    d.set_defaults(fn=cmd_dev)

    st = sub.add_parser("status", help="show the runtime's endpoints, pools and spend")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    lg = sub.add_parser("logs", help="follow the runtime's logs")
    lg.add_argument("endpoint", nargs="?")
    lg.add_argument("--backlog", type=int, default=50)
    lg.set_defaults(fn=cmd_logs)

    dm = sub.add_parser("daemon", help="the language server (stdio; --tcp PORT for debugging)")
    dm.add_argument("args", nargs=argparse.REMAINDER)
    dm.set_defaults(fn=cmd_daemon)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    return int(a.fn(a) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
