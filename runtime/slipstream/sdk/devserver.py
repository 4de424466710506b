"""`slipstream dev`: watch the project, hot-reload each save on the runtime, serve it over HTTP.

One route per endpoint (`POST /greet`, `POST /Painter/paint`) taking the keyword arguments as a
JSON object, with an OpenAPI document built from the functions' signatures at /openapi.json.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..protocol.envvars import TOKEN
from ..protocol.errors import DeployError, SlipstreamError
from ..protocol.kinds import ErrorKind
from ..protocol.messages import EndpointInfo
from .client import RuntimeClient
from .config import find_project_root, load_project, project_key
from .sync import SyncResult, is_ignored, sync_project

__all__ = ["run_dev", "DevState", "create_dev_app", "openapi_for", "watch_filter"]

_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


def _out(msg: str) -> None:
    print(msg, flush=True)


class DevState:
    """What the dev server knows: the runtime client and the endpoints of the last good sync."""

    def __init__(self, client: RuntimeClient | None, root: Path, routed: Any = None) -> None:
        self.client = client
        self.routed = (
            routed  # several runtimes ([runtimes] in slipstream.toml): routing.RoutedClients
        )
        self.root = root
        self.endpoints: list[EndpointInfo] = []
        self.generation: str | None = None
        self.last_error: str | None = None
        self.warned: set[tuple[Any, str]] = set()
        self.lock = threading.Lock()

    def sync(self, reason: str = "") -> SyncResult | None:
        with self.lock:
            started = time.perf_counter()
            try:
                if (
                    self.routed is not None
                ):  # every runtime serving an endpoint reloads (routing.py)
                    res = self.routed.sync_each(
                        [
                            (
                                e.get("spec", {}).get("gpu") or (),
                                e.get("spec", {}).get("runtime"),
                                e["name"],
                            )
                            for e in self.endpoints
                        ],
                        progress=lambda line: _out(f"  {line}") if line else None,
                    )
                else:
                    assert self.client is not None  # one runtime: given at start
                    res = sync_project(
                        self.client,
                        self.root,
                        progress=lambda line: _out(f"  {line}") if line else None,
                    )
            except DeployError as exc:
                where = f"{exc.file}:{exc.line}" if exc.file else "deploy"
                self.last_error = f"{where}: {exc.type}: {exc.message}"
                kept = (
                    f"still serving {self.generation}"
                    if self.generation
                    else "nothing deployed yet: fix it and save"
                )
                _out(f"✗ {where}  {exc.type}: {exc.message}  ({kept})")
                return None
            except SlipstreamError as exc:
                self.last_error = str(exc)
                _out(f"✗ {exc}")
                return None
            was_broken = self.last_error is not None
            self.last_error = None
            self.endpoints = res.endpoints
            self.generation = res.generation
            for e in res.endpoints:
                for w in e.get("warnings") or []:
                    if (e.get("name"), w) not in self.warned:  # once per run, not on every save
                        self.warned.add((e.get("name"), w))
                        _out(
                            f"⚠ endpoint {e.get('name')!r} ({e.get('file')}:{e.get('line')}): {w.removeprefix('warning: ')}"
                        )
            ms = (time.perf_counter() - started) * 1000
            if res.unchanged:
                if was_broken:  # the last good files again: no deploy, but the ✗ is no longer true
                    _out(f"✓ {res.generation} serving again (the last error is fixed)")
                return res
            what = ", ".join(res.changed[:5]) + (
                f" +{len(res.changed) - 5}" if len(res.changed) > 5 else ""
            )
            extra = f"; re-executed {', '.join(res.reexecuted)}" if res.reexecuted else ""
            if res.restart:
                extra = f"; workers replaced ({res.restart})"
            running = res.in_flight_note()
            if running:  # they finish on the code they started with; the next calls run this
                extra += f"; {running}"
            where = f" on {', '.join(self.routed.synced_to())}" if self.routed is not None else ""
            kept_note, stale = res.kept_lines()
            _out(
                f"↻ {res.generation}  {what or reason}  live{where} in {ms:.0f} ms (uploaded {res.uploaded}){extra}{kept_note}"
            )
            for line in stale:
                _out(line)
            return res

    def client_for(self, name: str) -> RuntimeClient:
        """The runtime client that serves endpoint `name` (several runtimes: its route)."""
        if self.routed is None:
            assert self.client is not None
            return self.client
        spec = next((e.get("spec") or {} for e in self.endpoints if e.get("name") == name), {})
        return self.routed.ensure(spec.get("gpu") or (), spec.get("runtime"), name)


def follow_setup_output(client: RuntimeClient, stop: threading.Event) -> threading.Thread:
    """Print what the project's workers print outside calls (their module's import, a class's
    setup(), labelled by the worker: `[Painter setup] loading model...`) as it comes: at each
    worker start and each reload that runs setup again. A call's own output is its reply's."""
    started = time.time() - 1
    shown: dict[
        tuple[Any, ...], None
    ] = {}  # the last lines shown: a reconnect's backlog repeats none

    def follow() -> None:
        while not stop.is_set():
            try:
                for e in client.logs(backlog=200, stop=stop, project=client.project):
                    key = (e.get("ts"), e.get("worker"), e.get("stream"), e.get("text"))
                    if not e.get("phase") or float(e.get("ts", 0)) < started or key in shown:
                        continue
                    shown[key] = None
                    if len(shown) > 400:
                        del shown[next(iter(shown))]
                    for line in str(e.get("text", "")).splitlines():
                        _out(line)
            except Exception:  # noqa: BLE001 - the runtime went away or restarts: follow it again
                pass
            stop.wait(1.0)

    t = threading.Thread(target=follow, name="setup-output", daemon=True)
    t.start()
    return t


def watch_filter(root: Path):
    try:
        include = load_project(root).include  # [sync] include: those files reload too
    except ValueError:
        include = []

    def allowed(change: Any, path: str) -> bool:
        try:
            rel = Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            return False
        return not is_ignored(rel, include)

    return allowed


def openapi_for(endpoints: list[EndpointInfo], title: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for e in endpoints:
        sigs = e.get("signature", {})
        components.update(e.get("schemas") or {})
        for method, params in sigs.items():
            route = f"/{e['name']}" + (f"/{method}" if method else "")
            props = {}
            for p in params:
                schema: dict[str, Any] = dict(p.get("schema") or {})
                t = _TYPES.get((p.get("annotation") or "").split("[")[0])
                if t and not schema:
                    schema["type"] = t
                if not p["required"]:
                    schema["default"] = p.get("default")
                props[p["name"]] = schema
            example = (e.get("spec") or {}).get("example") or None
            if example and e.get("kind") == "class":
                example = example.get(method)
            body: dict[str, Any] = {
                "type": "object",
                "properties": props,
                "required": [p["name"] for p in params if p["required"]],
                "additionalProperties": False,
            }
            if example:
                body["example"] = example
            paths[route] = {
                "post": {
                    "summary": f"{e['name']}{'.' + method if method else ''} on {e.get('gpu', 'CPU')}",
                    "description": e.get("doc", ""),
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {
                        "200": {"description": "the result (images as base64 PNG)"},
                        "422": {
                            "description": "arguments that do not fit the signature; the error names each field"
                        },
                    },
                }
            }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "dev"},
        "paths": paths,
    }
    if components:
        doc["components"] = {"schemas": components}
    return doc


def create_dev_app(state: DevState, token: str | None = None) -> Any:
    """dev's HTTP app; with `token` every request must carry `Authorization: Bearer <token>`
    (`slipstream dev --token`, required off loopback)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_for(state.endpoints, f"{state.root.name} (slipstream dev)"))

    async def index(request: Request) -> HTMLResponse:
        rows = "".join(
            f"<li><code>POST /{e['name']}{'/' + m if m else ''}</code> on {e.get('gpu')}</li>"
            for e in state.endpoints
            for m in (e.get("methods") or [""])
        )
        err = (
            f"<p style='color:#b00'>last save refused: {state.last_error}</p>"
            if state.last_error
            else ""
        )
        return HTMLResponse(
            f"<h1>slipstream dev: {state.root.name}</h1><p>generation {state.generation}</p>{err}"
            f"<ul>{rows}</ul><p><a href='/openapi.json'>openapi.json</a></p>"
        )

    async def call(request: Request) -> Response:
        name = request.path_params["name"]
        method = request.path_params.get("method")
        known = {e["name"]: e for e in state.endpoints}
        if name not in known:
            return JSONResponse(
                {"error": f"no endpoint {name!r}; have {sorted(known)}"}, status_code=404
            )
        try:
            raw = await request.body()
            import json

            kwargs = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return JSONResponse(
                {"error": f"body must be a JSON object of keyword arguments: {exc}"},
                status_code=400,
            )
        if not isinstance(kwargs, dict):
            return JSONResponse(
                {"error": "body must be a JSON object of keyword arguments"}, status_code=400
            )
        names = tuple((known[name].get("spec") or {}).get("secrets") or ())
        if (
            names
        ):  # secrets=[...]: from this process's environment or the project's .env, with the call
            from .secretvals import SECRETS_KEY, resolve

            try:
                kwargs = {**kwargs, SECRETS_KEY: resolve(names, name, state.root)}
            except SlipstreamError as exc:
                return JSONResponse(
                    {"ok": False, "error": {"type": "MissingSecret", "message": str(exc)}},
                    status_code=400,
                )
        if (method or "") in (known[name].get("streams") or []):
            # a generator endpoint: one JSON line per item as the worker yields it, then the reply;
            # a client that disconnects closes the relay, and the runtime cancels the call
            client = await asyncio.to_thread(state.client_for, name)
            return StreamingResponse(
                client.stream_json_async(name, kwargs, method), media_type="application/x-ndjson"
            )
        from ..protocol.disconnect import unless_disconnected

        try:
            client = await asyncio.to_thread(state.client_for, name)
        except SlipstreamError as exc:  # no runtime has its GPU
            return JSONResponse(
                {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}},
                status_code=503,
            )
        task = asyncio.ensure_future(client.call_json_async(name, kwargs, method))
        if not await unless_disconnected(request, task):
            return Response(status_code=499)  # the client went away: the runtime cancels its call
        try:
            reply = task.result()
        except SlipstreamError as exc:
            return JSONResponse(
                {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}},
                status_code=502,
            )
        bad_request = (reply.get("error") or {}).get("kind") == ErrorKind.BAD_REQUEST
        status = (
            200 if reply.get("ok") else (ErrorKind.BAD_REQUEST.http_status if bad_request else 500)
        )
        return JSONResponse(reply, status_code=status)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/openapi.json", openapi),
            Route("/{name}", call, methods=["POST"]),
            Route("/{name}/{method}", call, methods=["POST"]),
        ]
    )
    if not token:
        return app
    import hmac

    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await JSONResponse(
                    {"error": "missing or wrong token: send Authorization: Bearer <token>"},
                    status_code=401,
                )(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


def run_dev(
    path: Path,
    *,
    port: int = 8888,
    runtime_url: str | None = None,
    host: str = "127.0.0.1",
    token: str | None = None,
    access_token: str | None = None,
) -> int:
    import os

    import uvicorn
    import watchfiles

    root = find_project_root(path)
    embedded = None
    routed = None
    if not runtime_url:  # [runtimes] in slipstream.toml: each endpoint on its runtime (routing.py)
        from .routing import RoutedClients

        routed = RoutedClients.open(
            load_project(root), project_key(root), None, lambda key, text: _out(text)
        )
        if routed is not None:
            routed.attach_as = "dev"  # each runtime keeps the project's workers warm (attach.py)
    client: RuntimeClient | None = None
    if routed is not None:
        _out("runtimes: " + ", ".join(f"{rt.name} ({rt.url})" for rt in routed.router.runtimes))
    else:  # --runtime, else the configured runtime, else the embedded one (runtimes.py)
        from .runtimes import ChosenRuntime, configured_or_embedded

        if runtime_url:
            chosen = ChosenRuntime(
                runtime_url, os.environ.get(TOKEN, "") if token is None else token
            )
        else:
            chosen = configured_or_embedded(root, load_project(root))
        embedded = chosen.embedded
        client = RuntimeClient(chosen.url, chosen.token, project=project_key(root))
        # attached while dev runs: each endpoint keeps a warm worker, and its keep() models,
        # past its idle_timeout (sdk/attach.py); ended when dev stops
        client.attach(client.project, "dev")
        if embedded is None:
            _out(f"runtime at {chosen.url}")
        else:
            _out(
                f"embedded runtime at {embedded.url}"
                + ("" if embedded.info.get("gpus") else " (no GPU: endpoints run on the CPU)")
            )
    state = DevState(client, root, routed)
    stop = threading.Event()
    if client is not None:
        follow_setup_output(client, stop)
    res = state.sync("initial sync")
    if res is not None:
        _out(
            f"serving {len(state.endpoints)} endpoint(s) from {root} at http://{host}:{port}  (docs: /openapi.json)"
        )
    else:  # the first deploy was refused (said above): the URL still, and what to do
        _out(
            f"listening at http://{host}:{port}: its endpoints come up when {root} deploys (fix the error above and save)"
        )

    def watch() -> None:
        for changes in watchfiles.watch(
            root,
            watch_filter=watch_filter(root),
            debounce=50,
            step=20,
            stop_event=stop,
            rust_timeout=500,
        ):
            state.sync(", ".join(sorted({Path(p).name for _, p in changes})))

    threading.Thread(target=watch, name="watch", daemon=True).start()
    try:
        uvicorn.run(create_dev_app(state, access_token), host=host, port=port, log_level="warning")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if client is not None:
            client.close()  # ends the dev session: the idle clock of its workers starts
        if embedded is not None:
            embedded.stop()
        if routed is not None:
            routed.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_dev(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
