"""HTTP client for a Slipstream runtime (sync, calls, status)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..protocol import envvars, wire
from ..protocol.errors import (
    DeployError,
    EndpointTimeout,
    ErrorInfo,
    MissingBlobs,
    Overloaded,
    RuntimeUnavailable,
    SlipstreamError,
)
from ..protocol.kinds import ErrorKind
from ..protocol.messages import CommitReply, EndpointStatus, call_params
from .datachannel import AsyncDataClient, DataClient, parse_records

if TYPE_CHECKING:
    from .attach import Attachments

__all__ = ["RuntimeClient", "CallOutcome", "UnknownEndpoint", "RuntimeRestarted"]


class UnknownEndpoint(SlipstreamError, LookupError):
    """The runtime has no endpoint by that name (not synced yet, or the runtime restarted)."""


class RuntimeRestarted(SlipstreamError):
    """The runtime at the URL is a new process: the code must be synced again."""


class CallOutcome:
    """What came back from one SDK call: the value or the error, the logs and the metering."""

    def __init__(self, status: int = 0) -> None:
        self.value: Any = None
        self.error: ErrorInfo | None = None
        self.logs: list[dict[str, str]] = []
        self.meta: dict[str, Any] = {}
        self.status = status


SMALL_BODY = 1 << 20
# an idle connection is kept this long (httpx's default is 5 s: a save after a pause paid a new
# connection, and over https a TLS handshake, on top of its round trip); the runtime keeps them 30 s
KEEPALIVE_S = 25.0
CA_BUNDLE_ENV = envvars.CA_BUNDLE
INSECURE_ENV = envvars.ALLOW_INSECURE
_warned_insecure: set[str] = set()


def ca_bundle_setting() -> str | None:
    """The CA bundle to verify runtimes' certificates with: $SLIPSTREAM_CA_BUNDLE, else
    [runtime] ca_bundle in the slipstream.toml of the current folder's project (relative to that
    file's folder); None: the system's trust store."""
    if os.environ.get(CA_BUNDLE_ENV):
        return os.environ[CA_BUNDLE_ENV]
    try:
        from .config import find_project_root, load_project

        root = find_project_root(Path.cwd())
        value = load_project(root).raw.get("runtime", {}).get("ca_bundle")
    except (OSError, ValueError):
        return None
    return str(root / value) if isinstance(value, str) and value else None


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Certificate and host name verification against the system store or the CA bundle."""
    bundle = ca_bundle or ca_bundle_setting()
    if bundle and not Path(bundle).is_file():
        raise SlipstreamError(
            f"the CA bundle {bundle} ({CA_BUNDLE_ENV} or slipstream.toml [runtime] ca_bundle) is not a file"
        )
    try:
        return ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()
    except ssl.SSLError as exc:
        raise SlipstreamError(f"cannot read the CA bundle {bundle}: {exc}") from None


def check_transport(url: str, token: str) -> None:
    """Refuse to send a token in clear text (http://) to a host that is not loopback, unless
    SLIPSTREAM_ALLOW_INSECURE=1 says so; then warn once per URL, loudly."""
    from ..protocol.hosts import is_loopback

    u = httpx.URL(url)
    # 0.0.0.0 / :: (a runtime's own URL when it binds every address, as its workers get it)
    # reach this very host: nothing leaves it
    if u.scheme != "http" or not token or is_loopback(u.host) or u.host in ("0.0.0.0", "::"):
        return
    allowed = os.environ.get(INSECURE_ENV, "").lower()
    if allowed == "runtime" and url == os.environ.get(envvars.RUNTIME_URL, "").rstrip("/"):
        return  # a runtime's own worker calling it back on the address it serves plain HTTP on
    if allowed not in ("1", "true", "yes", "on"):
        raise SlipstreamError(
            f"refusing to send the token in clear text to {url}: anyone on the path could read it and run code "
            f"on the runtime. Serve HTTPS (`slipstream serve --tls-cert FILE --tls-key FILE`, or a TLS proxy in "
            f"front) and use an https:// URL, reach it over SSH, or set {INSECURE_ENV}=1 to send it anyway"
        )
    if url not in _warned_insecure:
        _warned_insecure.add(url)
        print(
            f"slipstream: WARNING: sending the runtime token in CLEAR TEXT to {url} ({INSECURE_ENV} is set); "
            "anyone on the network path can read it and run code on the runtime",
            file=sys.stderr,
            flush=True,
        )


def _timeout(read: float | None) -> httpx.Timeout:
    return httpx.Timeout(connect=10.0, read=read, write=600.0, pool=None)


def call_path(endpoint: str, project: str | None) -> str:
    """The HTTP call route: project-qualified when the project is known (always, from the SDK)."""
    return (
        f"/v1/projects/{project}/endpoints/{endpoint}/call"
        if project
        else f"/v1/endpoints/{endpoint}/call"
    )


class RuntimeClient:
    """One runtime. `project` (a key from slipstream.sdk.config.project_key) is the project whose
    endpoints calls reach unless a call names another; sync(root) sets it when unset."""

    def __init__(
        self,
        url: str,
        token: str = "",
        *,
        timeout: float | None = 600.0,
        project: str | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.link = None
        if url.lower().startswith(
            "ssh://"
        ):  # a runtime on that host, through an ssh tunnel (sshlink.py)
            from .sshlink import link_for

            self.link = link_for(url)
            url, token = self.link.url, self.link.token  # the host's token, read over ssh
        self.url = url.rstrip("/")
        self.token = token
        self.project = project
        self.routing: str | None = None  # the routing table sent with each commit (sdk/routing.py)
        check_transport(self.url, token)
        self.tls: ssl.SSLContext | None = (
            tls_context(ca_bundle) if self.url.startswith("https:") else None
        )
        self._verify: Any = self.tls if self.tls is not None else True
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(
            max_connections=256, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_S
        )
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=_timeout(timeout),
            limits=limits,
            trust_env=False,
            verify=self._verify,
        )
        self._aio: httpx.AsyncClient | None = None
        self._aio_loop: asyncio.AbstractEventLoop | None = None
        self._adata: AsyncDataClient | None = None
        self._headers = headers
        self.runtime_id: str | None = None
        self._data_client: DataClient | None = None
        self._data_checked = False
        self._data_lock = threading.Lock()
        self.known_blobs: set[str] = (
            set()
        )  # hashes this runtime confirmed having (a sync then sends only new ones)
        self._attachments: Attachments | None = None  # attached dev sessions (attach())

    @classmethod
    def from_env(cls) -> RuntimeClient | None:
        url = os.environ.get(envvars.RUNTIME_URL)
        return cls(url, os.environ.get(envvars.TOKEN, "")) if url else None

    def close(self) -> None:
        self.detach()
        self.http.close()
        if self._data_client is not None:
            self._data_client.close()

    # --- dev sessions (sdk/attach.py) ---------------------------------------------------
    def attach(self, project: str | None = None, client: str = "sdk") -> None:
        """Attach a dev session for `project` (default: this client's) until close(): the
        runtime keeps a warm worker of each of its endpoints past their idle_timeout. `client`
        says what attached (`slipstream status` shows it): "dev", "editor", "sdk"."""
        key = project or self.project
        if key is None:
            return
        if self._attachments is None:
            from .attach import Attachments

            self._attachments = Attachments(self)
        self._attachments.attach(key, client)

    def detach(self) -> None:
        """End this client's dev sessions: its projects' workers now stop after idle_timeout."""
        if self._attachments is not None:
            self._attachments.close()
            self._attachments = None

    def attached(self) -> list[str]:
        """The projects this client holds attached."""
        return [] if self._attachments is None else sorted(self._attachments.sessions)

    def reconnect(self) -> None:
        """Forget the connections to a runtime that went away: a restarted runtime has a new
        binary channel port, and pooled connections to the old one are dead."""
        if self._data_client is not None:
            self._data_client.close()
        self._data_client, self._data_checked = None, False
        self.known_blobs.clear()  # a restarted runtime may have a fresh store
        self._adata = None  # its connections belong to a loop; they close when collected

    def __repr__(self) -> str:  # never show the token
        return f"RuntimeClient({self.url!r})"

    # --- plumbing ---------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ReadTimeout:
            raise _client_timeout(kw.get("timeout")) from None
        except httpx.TransportError as exc:
            _raise_if_untrusted(self.url, exc)
            if self.link is not None:
                self.link.repair()  # a dropped ssh connection: back for the retry (as after a runtime restart)
            raise RuntimeUnavailable(
                f"no Slipstream runtime answered at {self.url} ({exc.__class__.__name__}: {exc}). "
                "Start one with `slipstream serve`, or unset SLIPSTREAM_RUNTIME_URL to use the embedded one."
            ) from None
        if r.status_code == 401:
            raise SlipstreamError(
                f"the runtime at {self.url} refused the token ({_message(r)}); set SLIPSTREAM_TOKEN to the token it printed"
            )
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        r = self._request(method, path, **kw)
        if r.status_code >= 400:
            raise SlipstreamError(f"{method} {path} failed ({r.status_code}): {_message(r)}")
        return r.json()

    # --- status -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        h = self._json("GET", "/health")
        self.runtime_id = h.get("runtime_id")
        return h

    def endpoints(self, project: str | None = None) -> list[EndpointStatus]:
        """Every endpoint on the runtime (each names its project), or one project's."""
        return self.status(project)["endpoints"]

    def status(self, project: str | None = None) -> dict[str, Any]:
        """{endpoints, projects, spend, runtime}; with a project key, only that project's."""
        return self._json("GET", "/v1/endpoints", params={"project": project} if project else None)

    def rebuild(
        self,
        endpoint: str,
        project: str | None = None,
        keys: list[str] | None = None,
        stale: bool = False,
    ) -> dict[str, Any]:
        """Load the endpoint's kept objects again and re-run its setup() on each worker (keys:
        only these keep() keys; stale: only those running old code). Waits for the loads."""
        params: dict[str, Any] = {"stale": stale}
        if project:
            params["project"] = project
        if keys:
            params["keys"] = keys
        return self._json("POST", f"/v1/endpoints/{endpoint}/rebuild", params=params, timeout=None)

    def logs(
        self,
        endpoint: str | None = None,
        backlog: int = 50,
        stop: Any = None,
        tag: str | None = None,
        project: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Follow the runtime's log (SSE). `stop` (a threading.Event) ends it within ~1 s."""
        params: dict[str, Any] = {"backlog": backlog}
        if endpoint:
            params["endpoint"] = endpoint
        if project:
            params["project"] = project
        if tag:
            params["tag"] = tag
        read = None
        if stop is not None:
            params["keepalive"] = 0.5  # wake up often enough to notice `stop`
            read = 5.0
        with httpx.Client(
            base_url=self.url,
            headers=self._headers,
            trust_env=False,
            timeout=_timeout(read),
            verify=self._verify,
        ) as c:
            try:
                with c.stream("GET", "/v1/logs", params=params) as r:
                    if (
                        r.status_code != 200
                    ):  # a wrong token or a refused query: say so, never an empty stream
                        r.read()
                        if r.status_code == 401:
                            raise SlipstreamError(
                                f"the runtime at {self.url} refused the token ({_message(r)}); set SLIPSTREAM_TOKEN to the token it printed"
                            )
                        raise SlipstreamError(
                            f"GET /v1/logs failed ({r.status_code}): {_message(r)}"
                        )
                    yield from _follow(r, stop)
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ReadTimeout) and stop is None:
                    raise
                _raise_if_untrusted(self.url, exc)
                raise RuntimeUnavailable(
                    f"no Slipstream runtime answered at {self.url} ({exc.__class__.__name__}: {exc})"
                ) from None

    # --- sync -------------------------------------------------------------------------
    def missing(self, files: dict[str, str]) -> list[str]:
        r = self._request("POST", "/v1/sync/manifest", json={"files": files})
        if r.status_code >= 400:
            raise DeployError(_message(r), type="UploadRefused")
        return r.json()["missing"]

    def put_blob(self, sha: str, data: bytes) -> None:
        r = self._request(
            "PUT",
            f"/v1/blobs/{sha}",
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        if r.status_code >= 400:
            raise DeployError(_message(r), type="UploadRefused")

    def put_blobs(self, items: list[tuple[str, bytes]]) -> None:
        """Upload several files in one request (POST /v1/blobs); a runtime without that route
        gets them one PUT at a time."""

        def body() -> Iterator[bytes]:
            for sha, data in items:
                yield sha.encode() + len(data).to_bytes(8, "big")
                yield data

        size = sum(72 + len(d) for _, d in items)
        r = self._request(
            "POST",
            "/v1/blobs",
            content=body(),
            headers={"content-type": "application/octet-stream", "content-length": str(size)},
        )
        if r.status_code in (404, 405):
            for sha, data in items:
                self.put_blob(sha, data)
            return
        if r.status_code >= 400:
            raise DeployError(_message(r), type="UploadRefused")

    def commit(
        self,
        files: dict[str, str],
        entries: list[str],
        project: str | None = None,
        paths: list[str] | None = None,
        *,
        blobs: dict[str, bytes] | None = None,
        report_missing: bool = False,
        skipped: dict[str, str] | None = None,
        sizes: dict[str, int] | None = None,
    ) -> CommitReply:
        """Deploy these files as the project's new generation (only its endpoints change);
        paths: the folders (relative to the root) its modules are imported from. blobs: files'
        bytes sent along (small edits); report_missing: MissingBlobs instead of a refusal when
        the runtime lacks some files; skipped: the paths the sync left out, with the rule
        that did (a call failing on one says so); sizes: each file's bytes, so the runtime
        refuses a project over its limits before anything is uploaded."""
        body: dict[str, Any] = {"files": files, "entries": entries}
        if paths is not None:
            body["paths"] = paths
        if project or self.project:
            body["project"] = project or self.project
        if (
            self.routing is not None
        ):  # several runtimes: nested calls route as this client does (routing.py)
            body["routing"] = self.routing
        if blobs:
            body["blobs"] = {sha: base64.b64encode(data).decode() for sha, data in blobs.items()}
        if report_missing:
            body["report_missing"] = True
        if skipped:
            body["skipped"] = skipped
        if sizes is not None:
            body["sizes"] = sizes
        r = self._request("POST", "/v1/generations", json=body, timeout=_timeout(None))
        if r.status_code >= 400:
            try:
                err = r.json().get("error", {})
            except ValueError:
                err = {}
            if r.status_code == 409 and err.get("type") == "MissingBlobs":
                raise MissingBlobs(err.get("message", ""), list(err.get("missing", [])))
            raise DeployError(
                err.get("message") or _message(r),
                type=err.get("type", "DeployError"),
                file=err.get("file"),
                line=err.get("line"),
                traceback=err.get("traceback", ""),
            )
        return r.json()

    def sync(self, root: str | os.PathLike[str]) -> Any:
        from .sync import sync_project

        res = sync_project(self, Path(root))
        if self.project is None:
            self.project = res.project  # this client's calls now reach that project's endpoints
        return res

    # --- calls ------------------------------------------------------------------------
    def call_json(
        self,
        endpoint: str,
        kwargs: dict[str, Any] | None = None,
        method: str | None = None,
        args: list[Any] | None = None,
        timeout: float | None = None,
        tag: str | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:
        """Call with JSON in and the JSON display form out (for editors and scripts).
        With a tag, the call's log lines can be followed live with logs(tag=...)."""
        r = self._request(
            "POST",
            call_path(endpoint, project or self.project),
            params=call_params(method, tag=tag),
            json={"args": args or [], "kwargs": kwargs or {}},
            timeout=_timeout(timeout),
        )
        return _json_outcome(r)

    async def call_json_async(
        self,
        endpoint: str,
        kwargs: dict[str, Any] | None = None,
        method: str | None = None,
        timeout: float | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:
        """call_json for asyncio (the dev server): cancelling it closes the connection, and the
        runtime cancels the call."""
        try:
            r = await self._async_http().post(
                call_path(endpoint, project or self.project),
                params=call_params(method),
                json={"kwargs": kwargs or {}},
                timeout=_timeout(timeout),
            )
        except httpx.ReadTimeout:
            raise _client_timeout(timeout) from None
        except httpx.TransportError as exc:
            raise RuntimeUnavailable(
                f"no Slipstream runtime answered at {self.url} ({exc.__class__.__name__}: {exc})"
            ) from None
        return _json_outcome(r)

    async def stream_json_async(
        self,
        endpoint: str,
        kwargs: dict[str, Any] | None = None,
        method: str | None = None,
        project: str | None = None,
    ) -> AsyncIterator[bytes]:
        """A generator endpoint over the JSON route with streaming: one JSON line per event
        ({"item": ...}, {"log": ...}, then the reply with "ok"), as the worker yields them."""
        try:
            async with self._async_http().stream(
                "POST",
                call_path(endpoint, project or self.project),
                params=call_params(method, stream=True),
                json={"kwargs": kwargs or {}},
                timeout=_timeout(None),
            ) as r:
                if r.status_code >= 400:
                    await r.aread()
                    yield wire.json_dumps(_json_outcome(r)) + b"\n"
                    return
                async for line in r.aiter_lines():
                    if line:
                        yield line.encode() + b"\n"
        except httpx.TransportError as exc:
            yield (
                wire.json_dumps(
                    {
                        "ok": False,
                        "error": {
                            "type": "RuntimeUnavailable",
                            "message": f"lost the runtime at {self.url}: {exc}",
                        },
                    }
                )
                + b"\n"
            )

    def _data(self) -> DataClient | None:
        """The binary call channel, when the runtime offers one and it can be reached."""
        if self._data_client is None and not self._data_checked:
            with self._data_lock:  # the first calls of a .map arrive together: all use the channel
                if self._data_client is None and not self._data_checked:
                    if os.environ.get(envvars.TRANSPORT, "").lower() != "http":
                        h = self.health()
                        port, host = h.get("data_port"), httpx.URL(self.url).host
                        if self.link is not None:  # the host's data port, forwarded to a local one
                            port = self.link.data_port if port else None
                        # over https:// the channel must be TLS too: a runtime behind a TLS proxy
                        # offers a plain one, and the token never goes out in clear text
                        if port and host and (self.tls is None or h.get("tls")):
                            client = DataClient(host, int(port), self.token, self.tls)
                            # a proxy in front forwards only the HTTP port: find out at once (a
                            # short connect timeout) and use HTTP from then on
                            self._data_client = client if client.probe() else None
                    self._data_checked = True
        return self._data_client

    def call(
        self,
        endpoint: str,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None = None,
        *,
        project: str | None = None,
    ) -> CallOutcome:
        project = project or self.project
        chunks = wire.dumps({"args": list(args), "kwargs": kwargs})
        data = self._data()
        if data is not None:
            try:
                status, body = data.call(endpoint, method, chunks, timeout, project)
            except TimeoutError:
                raise _client_timeout(timeout) from None
            except OSError as exc:
                if isinstance(exc, ConnectionRefusedError):
                    self._data_client = None  # e.g. a proxy in front: fall back to HTTP for good
                else:
                    raise RuntimeUnavailable(
                        f"lost the runtime at {self.url} during the call: {exc}"
                    ) from None
            else:
                return _records_outcome(status, body)
        return self._call_http(endpoint, method, chunks, timeout, project)

    def _call_http(
        self,
        endpoint: str,
        method: str | None,
        chunks: list[Any],
        timeout: float | None,
        project: str | None = None,
    ) -> CallOutcome:
        params = call_params(method)
        size = wire.frame_length(chunks)
        # one write for small bodies: separate header/body segments meet delayed ACKs (40 ms)
        content: Any = b"".join(chunks) if size < SMALL_BODY else _iter(chunks)
        r = self._request(
            "POST",
            call_path(endpoint, project),
            params=params,
            content=content,
            headers={"content-type": wire.CONTENT_TYPE, "content-length": str(size)},
            timeout=_timeout(timeout),
        )
        return _outcome(r.status_code, r.headers.get("content-type", ""), [r.content], r)

    def stream(
        self,
        endpoint: str,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None = None,
        *,
        project: str | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """Yield ("item", value) as a generator endpoint produces them, then ("done", outcome)."""
        try:
            with self.http.stream(
                **self._stream_request(endpoint, method, args, kwargs, timeout, project)
            ) as r:
                if not _is_records(r):
                    r.read()
                    yield (
                        "done",
                        _outcome(r.status_code, r.headers.get("content-type", ""), [r.content], r),
                    )
                    return
                reader, out = wire.RecordReader(), CallOutcome(status=r.status_code)
                for chunk in r.iter_raw():
                    yield from _stream_records(reader, out, chunk)
                yield "done", out
        except httpx.ReadTimeout:
            raise _client_timeout(timeout) from None
        except httpx.TransportError as exc:
            raise RuntimeUnavailable(
                f"lost the runtime at {self.url} while streaming: {exc}"
            ) from None

    async def call_async(
        self,
        endpoint: str,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None = None,
        *,
        project: str | None = None,
    ) -> CallOutcome:
        project = project or self.project
        loop = asyncio.get_running_loop()
        data = self._data()  # also the binary channel when the runtime offers one
        if data is not None:
            if self._adata is None or self._adata.loop is not loop:
                self._adata = AsyncDataClient(data.addr[0], data.addr[1], self.token, self.tls)
            chunks = wire.dumps({"args": list(args), "kwargs": kwargs})
            try:
                status, body = await self._adata.call(endpoint, method, chunks, timeout, project)
            except TimeoutError:
                raise _client_timeout(timeout) from None
            except (OSError, asyncio.IncompleteReadError) as exc:
                raise RuntimeUnavailable(
                    f"lost the runtime at {self.url} during the call: {exc}"
                ) from None
            return _records_outcome(status, body)
        aio = self._async_http()
        params = call_params(method)
        payload = wire.dumps_bytes({"args": list(args), "kwargs": kwargs})
        try:
            r = await aio.post(
                call_path(endpoint, project),
                params=params,
                content=payload,
                headers={"content-type": wire.CONTENT_TYPE},
                timeout=_timeout(timeout),
            )
        except httpx.TransportError as exc:
            raise RuntimeUnavailable(
                f"no Slipstream runtime answered at {self.url}: {exc}"
            ) from None
        return _outcome(r.status_code, r.headers.get("content-type", ""), [r.content], r)

    def _async_http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio_loop is not loop:
            # an AsyncClient belongs to the loop it first ran on: each asyncio.run() needs its own
            limits = httpx.Limits(
                max_connections=256, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_S
            )
            self._aio = httpx.AsyncClient(
                base_url=self.url,
                headers=self._headers,
                timeout=_timeout(600.0),
                limits=limits,
                trust_env=False,
                verify=self._verify,
            )
            self._aio_loop = loop
        return self._aio

    async def stream_async(
        self,
        endpoint: str,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None = None,
        *,
        project: str | None = None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """`stream` for asyncio: ("item", value) as the worker yields them, then ("done", outcome).
        Leaving early (break, cancellation, a timeout) closes the connection: the runtime
        cancels the call."""
        try:
            async with self._async_http().stream(
                **self._stream_request(endpoint, method, args, kwargs, timeout, project)
            ) as r:
                if not _is_records(r):
                    await r.aread()
                    yield (
                        "done",
                        _outcome(r.status_code, r.headers.get("content-type", ""), [r.content], r),
                    )
                    return
                reader, out = wire.RecordReader(), CallOutcome(status=r.status_code)
                async for chunk in r.aiter_raw():
                    for item in _stream_records(reader, out, chunk):
                        yield item
                yield "done", out
        except httpx.ReadTimeout:
            raise _client_timeout(timeout) from None
        except httpx.TransportError as exc:
            raise RuntimeUnavailable(
                f"lost the runtime at {self.url} while streaming: {exc}"
            ) from None

    def _stream_request(
        self,
        endpoint: str,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        project: str | None,
    ) -> dict[str, Any]:
        """The streaming POST both `stream` and `stream_async` send."""
        return {
            "method": "POST",
            "url": call_path(endpoint, project or self.project),
            "params": call_params(method, stream=True),
            "content": wire.dumps_bytes({"args": list(args), "kwargs": kwargs}),
            "headers": {"content-type": wire.CONTENT_TYPE},
            "timeout": _timeout(timeout),
        }

    def abort(self) -> None:
        """Close the connections of calls in flight (after Ctrl-C): the runtime cancels them."""
        if self._data_client is not None:
            self._data_client.abort()

    async def aclose(self) -> None:
        if self._aio is not None:
            await self._aio.aclose()
            self._aio = None


def _raise_if_untrusted(url: str, exc: Exception) -> None:
    """A certificate that does not verify is a refusal, not a runtime that is down."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        raise SlipstreamError(
            f"the certificate of {url} is not trusted ({text}); if it is signed by your own CA, point "
            f"{CA_BUNDLE_ENV} (or slipstream.toml [runtime] ca_bundle) at that CA's certificate file"
        ) from None


def _json_outcome(r: httpx.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        data = {"ok": False, "error": {"type": "BadResponse", "message": r.text[:500]}}
    if r.status_code == 404:
        data.setdefault("error", {})["kind"] = ErrorKind.UNKNOWN_ENDPOINT
    data.setdefault("ok", r.status_code < 400)
    if data["ok"] is False and isinstance(data.get("error"), dict):
        data["error"].setdefault("frames", [])
    return data


def _client_timeout(timeout: Any) -> EndpointTimeout:
    if isinstance(timeout, httpx.Timeout):
        timeout = timeout.read
    after = f" within {timeout:g}s" if isinstance(timeout, (int, float)) else ""
    return EndpointTimeout(
        f"no answer from the runtime{after} (the client's timeout); the runtime cancels the call"
    )


def _follow(r: httpx.Response, stop: Any) -> Iterator[dict[str, Any]]:
    """The events of an open /v1/logs stream, until it ends or `stop` is set."""
    lines = r.iter_lines()
    while stop is None or not stop.is_set():
        try:
            line = next(lines)
        except StopIteration:
            return
        except httpx.ReadTimeout:
            if stop is None:
                raise
            return
        if line.startswith("data: "):
            yield json.loads(line[6:])


def _iter(chunks: list[Any]) -> Iterator[bytes]:
    for c in chunks:
        yield c if isinstance(c, bytes) else memoryview(c)  # type: ignore[misc]


def _message(r: httpx.Response) -> str:
    try:
        d = r.json()
        e = d.get("error") or d.get("detail")
        if isinstance(e, dict):
            return e.get("message", str(e))
        return str(e) if e else r.text[:500]
    except ValueError:
        return r.text[:500]


def _apply_record(out: CallOutcome, kind: int, payload: bytearray | memoryview) -> None:
    if kind == wire.REC_LOG:
        out.logs.append(json.loads(bytes(payload)))
    elif kind == wire.REC_META:
        out.meta = json.loads(bytes(payload))
    elif kind == wire.REC_RESULT:
        try:
            out.value = wire.loads(payload)
        except Exception as exc:  # noqa: BLE001 - the call ran: it fails here, counted, clearly
            out.error = unreadable_result(exc)
    elif kind == wire.REC_ERROR:
        d = json.loads(bytes(payload))
        info = ErrorInfo.from_dict(d)
        if d.get("pickled"):
            info.pickled = base64.b64decode(d["pickled"])
        out.error = info


def unreadable_result(exc: BaseException) -> ErrorInfo:
    """The error of a call whose result this process cannot unpickle (a class from a module
    only the runtime has): which module, and what to do."""
    missing = exc.name if isinstance(exc, ImportError) and exc.name else None
    what = (
        f"module {missing!r}, which this process cannot import"
        if missing
        else f"{type(exc).__name__}: {exc}"
    )
    fix = f"install or import {missing!r} here too" if missing else "make its class importable here"
    return ErrorInfo(
        UNREADABLE_RESULT,
        f"its result could not be read here: it needs {what}. Return plain data (numbers, "
        f"strings, lists, dicts, arrays, tensors), or {fix}",
        "",
        kind=ErrorKind.BAD_RESPONSE,
    )


UNREADABLE_RESULT = "UnreadableResult"


def _is_records(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").split(";")[0] == wire.CONTENT_TYPE


def _stream_records(
    reader: wire.RecordReader, out: CallOutcome, chunk: bytes
) -> Iterator[tuple[str, Any]]:
    """A streamed chunk's records: ("item", value) for each item; the rest go into `out`."""
    for kind, payload in reader.feed(chunk):
        if kind == wire.REC_ITEM:
            yield "item", wire.loads(payload)
        else:
            _apply_record(out, kind, payload)


def _records_outcome(status: int, body: bytearray) -> CallOutcome:
    out = CallOutcome(status)
    for kind, payload in parse_records(body):
        _apply_record(out, kind, payload)  # type: ignore[arg-type]
    if status == 404:
        raise UnknownEndpoint(out.error.message if out.error else "unknown endpoint")
    if status in (400, 409):  # a malformed project key; a name several projects define
        raise SlipstreamError(
            out.error.message if out.error else f"the runtime refused the call ({status})"
        )
    if status == 401:
        raise SlipstreamError(
            "the runtime refused the token; set SLIPSTREAM_TOKEN to the token it printed"
        )
    return out


def _outcome(status: int, ctype: str, chunks: list[bytes], r: httpx.Response) -> CallOutcome:
    out = CallOutcome(status)
    if ctype.split(";")[0] != wire.CONTENT_TYPE:
        if status == 404:
            raise UnknownEndpoint(_message(r))
        if status == 429:
            raise Overloaded(_message(r))
        out.error = ErrorInfo(
            "RuntimeError",
            f"runtime answered {status}: {_message(r)}",
            "",
            kind=ErrorKind.BAD_RESPONSE,
        )
        return out
    reader = wire.RecordReader()
    for chunk in chunks:
        for kind, payload in reader.feed(chunk):
            _apply_record(out, kind, payload)
    return out
