"""The run command: call an endpoint with its `example` (or given kwargs), report the result.

`slipstream.server.run` answers at once with a run id; the work continues in a task:
`slipstream/runStarted`, the current code deployed (quietly when nothing changed), the call
made off the event loop, then `slipstream/runLog` per log line and `slipstream/runResult`.
Images in the result are written as PNG files in the cache folder and sent as <= 256 px
thumbnails. A remote exception also becomes a diagnostic at the local file and line it came
from. Measured duration and cost feed the lenses and hovers. When the endpoint's kept objects
run old code after a reload (kept.py), the result carries a warning naming them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from slipstream.errors import ErrorKind

from .diagnostics import Reported
from .facts import facts_for
from .paths import cache_dir, local_file, uri_to_path
from .protocol import (
    NOTIFY_RUN_LOG,
    NOTIFY_RUN_RESULT,
    NOTIFY_RUN_STARTED,
    ErrorFrame,
    LogEntry,
    RemoteError,
    RunArgs,
    RunImage,
    RunLog,
    RunResult,
    RunRetry,
    RunStarted,
)

if TYPE_CHECKING:
    from .costs import CostBook
    from .deploy import Deployer
    from .diagnostics import ReportedProblems
    from .documents import Documents
    from .kept import KeptObjects
    from .routed import EditorRouting
    from .runtime import RuntimeManager

__all__ = ["Runner", "display_result"]

log = logging.getLogger(__name__)

THUMBNAIL_PX = 256


class RunRequestError(ValueError):
    """The run command named something this document does not define."""


class Runner:
    """Runs endpoints for the Run lens and reports each run to the client.

    documents: the open documents' endpoint indexes; runtime: the selected runtime; deployer:
    deploys the current code first; routing: several runtimes (routed.py); reported/republish:
    a remote exception as a diagnostic; costs: measured costs (lenses, hovers); notify: sends
    the client a notification (runStarted, runLog, runResult); project_root: a file's project
    folder; where_for: a document's endpoint -> the runtime serving it (None without
    [runtimes]); ran: called after each run (lenses and the status bar show its cost); kept:
    the kept objects running old code (the card's warning)."""

    def __init__(
        self,
        documents: Documents,
        runtime: RuntimeManager,
        deployer: Deployer,
        *,
        routing: EditorRouting,
        reported: ReportedProblems,
        republish: Callable[[set[Path]], Awaitable[None]],
        costs: CostBook,
        notify: Callable[[str, Any], None],
        project_root: Callable[[Path], Path],
        where_for: Callable[[str], Any],
        ran: Callable[[], Awaitable[None]],
        kept: KeptObjects | None = None,
    ) -> None:
        self.documents = documents
        self.kept = kept
        self.runtime = runtime
        self.deployer = deployer
        self.routing = routing
        self.reported = reported
        self.republish = republish
        self.costs = costs
        self.notify = notify
        self.project_root = project_root
        self.where_for = where_for
        self.ran = ran
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, args: RunArgs) -> str:
        """Check the request, start the run in the background, return its id."""
        uri = args.get("uri")
        name = args.get("endpoint")
        if not uri or not name:
            raise RunRequestError("run needs {uri, endpoint}")
        index = await self.documents.get(uri)
        ep = index.endpoint(name)
        if ep is None:
            raise RunRequestError(f"no endpoint named {name!r} in {uri}")
        method = args.get("method") or None
        if ep.kind == "class" and method is None:
            method = self.default_method(ep)
        facts = facts_for(ep)
        kwargs = args.get("kwargs")
        if kwargs is None:
            kwargs = facts.example_for(method) or {}
        run_id = uuid.uuid4().hex[:12]
        task = asyncio.ensure_future(
            self._run(
                run_id, uri, ep.name, method, dict(kwargs), facts.gpu_label, _secret_names(facts)
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run_id

    @staticmethod
    def default_method(ep: Any) -> str | None:
        """What Run calls on a class endpoint named without a method: the first method its
        example covers, else its first method."""
        example = ep.value("example")
        names = [m.name for m in ep.methods]
        with_example = [m for m in names if isinstance(example, dict) and m in example]
        return (with_example or names or [None])[0]

    async def _run(
        self,
        run_id: str,
        uri: str,
        endpoint: str,
        method: str | None,
        kwargs: dict[str, Any],
        gpu: str,
        secrets: tuple[str, ...] = (),
    ) -> None:
        await asyncio.sleep(0)  # let the command's reply (the run id) reach the client first
        self.notify(
            NOTIFY_RUN_STARTED,
            RunStarted(
                runId=run_id,
                uri=uri,
                endpoint=endpoint,
                method=method,
                gpu=gpu,
                startedAt=time.time(),
                **await self._runtime_of(uri, endpoint),  # type: ignore[typeddict-item]  # {} or {"runtime": name}
            ),
        )
        path = uri_to_path(uri)
        root = self.project_root(path) if path else None
        started = time.perf_counter()
        live = _LiveLogs(self.notify, run_id)
        try:
            reply = await self._call(root, endpoint, method, kwargs, live, secrets)
        except Exception as exc:
            log.warning("run %s of %s failed: %s", run_id, endpoint, exc)
            reply = {
                "ok": False,
                "error": {"type": type(exc).__name__, "message": str(exc), "traceback": ""},
            }
        reply.setdefault("duration_s", round(time.perf_counter() - started, 3))
        roots = [root] if root else []
        out_dir = cache_dir() / "outputs"
        result = await asyncio.to_thread(
            display_result, reply, run_id, uri, endpoint, method, gpu, roots, out_dir
        )
        live.stop()
        for entry in result["logs"][live.sent :]:  # what the live tail did not deliver
            stream: Literal["stdout", "stderr"] = (
                "stderr" if entry.get("stream") == "stderr" else "stdout"
            )
            self.notify(NOTIFY_RUN_LOG, RunLog(runId=run_id, stream=stream, text=entry["text"]))
        if reply.get("runtime"):  # several runtimes: the card names the one that ran it
            result["runtime"] = reply["runtime"]
            spend = self.routing.spend
            spend[reply["runtime"]] = spend.get(reply["runtime"], 0.0) + result["costUsd"]
        if self.kept is not None:
            warnings = await self.kept.run_warnings(root, endpoint)
            if warnings:
                result["warnings"] = warnings
        if result["status"] == "ok":
            self.costs.record(endpoint, result["durationS"], result["costUsd"])
        await self.report_error(endpoint, method, result)
        self.notify(NOTIFY_RUN_RESULT, result)
        await self.ran()

    async def _call(
        self,
        root: Path | None,
        endpoint: str,
        method: str | None,
        kwargs: dict[str, Any],
        live: _LiveLogs | None = None,
        secrets: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        if (
            secrets
        ):  # secrets=[...]: from the daemon's environment or the project's .env, as the SDK does
            from slipstream.errors import SlipstreamError
            from slipstream.sdk.secretvals import SECRETS_KEY, resolve

            try:
                kwargs = {**kwargs, SECRETS_KEY: resolve(secrets, endpoint, root)}
            except SlipstreamError as exc:  # before the call: nothing runs without it
                return {
                    "ok": False,
                    "error": {"type": "MissingSecret", "message": str(exc), "traceback": ""},
                }
        routed = (
            root is not None and self.routing.entries(root) is not None
        )  # several runtimes (routed.py)
        route = None
        if routed and root is not None and self.routing.specs.get(root):
            route = await self._route(
                root, endpoint
            )  # no runtime has its GPU: fails before any deploy
            if isinstance(route, dict):
                return route
        if not routed:
            client = await self.runtime.ensure(root)
        if root is not None:
            deployed = await self.deployer.ensure_deployed(root)
            if not deployed["ok"]:
                err = deployed.get("error") or {}
                return {
                    "ok": False,
                    "error": {
                        "type": err.get("type", "DeployError"),
                        "message": f"the code could not be deployed: {err.get('message', '')}",
                        "traceback": "",
                        "frames": [{"file": err["file"], "line": err["line"], "name": "<module>"}]
                        if err.get("file") and err.get("line")
                        else [],
                    },
                }
        if routed and root is not None:
            route = await self._route(root, endpoint)
            if isinstance(route, dict):
                return route
            client = route[0]
        if live is not None:
            live.start(client)
        tag = live.run_id if live is not None else None
        from slipstream.sdk.client import UnknownEndpoint
        from slipstream.sdk.config import project_key
        from slipstream.sdk.recovery import once_more, recover

        # the project's own endpoint, never another project's of the same name (same key as its deploys)
        project = project_key(root) if root is not None else None
        loop = asyncio.get_running_loop()

        class Lost(UnknownEndpoint):
            def __init__(self, reply: dict[str, Any]) -> None:
                super().__init__(str(reply["error"].get("message", "")))
                self.reply = reply

        def call() -> dict[str, Any]:  # every attempt the same call, its tag too: live logs go on
            reply = client.call_json(endpoint, kwargs, method, None, None, tag, project)
            error = reply.get("error") or {}
            if (
                not reply.get("ok")
                and error.get("kind") == ErrorKind.UNKNOWN_ENDPOINT
                and root is not None
            ):
                raise Lost(reply)
            return reply

        def resync() -> None:  # the runtime restarted or was switched under us: push the code again
            self.deployer.forget_runtime()
            if root is not None:
                asyncio.run_coroutine_threadsafe(self.deployer.deploy(root, "run"), loop).result()

        if routed and isinstance(route, tuple):
            embedded = route[1].runtime.embedded
        else:
            embedded = self.runtime.kind == "embedded"
        try:  # the SDK's path for a call whose runtime lost it (slipstream.sdk.recovery)
            reply = await asyncio.to_thread(
                once_more, call, lambda exc: recover(client, exc, resync, embedded=embedded)
            )
        except Lost as exc:
            reply = exc.reply
            reply["error"]["message"] = (
                f"{reply['error'].get('message', '')} The runtime runs the saved files: save the "
                f"file that defines {endpoint!r} to deploy it."
            ).strip()
        if routed and isinstance(route, tuple):
            reply["runtime"] = route[1].runtime.name
            self.routing.last_root = root
        return reply

    async def _runtime_of(self, uri: str, endpoint: str) -> dict[str, str]:
        """{"runtime": name} when the project routes over several runtimes and one serves it."""
        where = self.where_for(uri)
        if where is None:
            return {}
        ep = (await self.documents.get(uri)).endpoint(endpoint)
        at = where(ep) if ep is not None else None
        return {"runtime": at.runtime} if at is not None and at.runtime else {}

    async def _route(self, root: Path, endpoint: str) -> Any:
        """(client, route) of the runtime serving `endpoint`, or an error reply (no runtime has its GPU)."""
        from slipstream.errors import SlipstreamError

        try:
            return await asyncio.to_thread(self.routing.client_for, root, endpoint)
        except SlipstreamError as exc:
            return {
                "ok": False,
                "error": {"type": type(exc).__name__, "message": str(exc), "traceback": ""},
            }

    async def report_error(self, endpoint: str, method: str | None, result: RunResult) -> None:
        """A run's remote exception as a diagnostic at the local file and line it came from (or
        none: the endpoint's earlier one is cleared)."""
        items: list[Reported] = []
        error = result.get("error")
        if error:
            where = next(
                (
                    f
                    for f in reversed(error["frames"])
                    if Path(f["file"]).is_absolute() and Path(f["file"]).is_file()
                ),
                None,
            )
            if where is not None:
                what = f"{endpoint}.{method}" if method else endpoint
                items.append(
                    Reported(
                        Path(where["file"]),
                        where["line"],
                        f"{error['type']}: {error['message']} (raised on the runtime while "
                        f"running {what})",
                        "remote-exception",
                        endpoint,
                    )
                )
        changed = self.reported.replace("remote-exception", endpoint, items)
        if changed:
            await self.republish(changed)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --- turning the runtime's JSON display form into a RunResult -------------------------------


def display_result(
    reply: dict[str, Any],
    run_id: str,
    uri: str,
    endpoint: str,
    method: str | None,
    gpu: str,
    roots: list[Path],
    out_dir: Path,
) -> RunResult:
    """Build the RunResult: images saved and thumbnailed, error frames mapped to local files."""
    ok = bool(reply.get("ok"))
    label = str(reply.get("gpu") or gpu)
    if reply.get("device") == "cpu" and label != "CPU":
        label = f"{label} → CPU"  # the embedded runtime had no such GPU and said so
    retries = _retries(reply.get("retries"))
    moved = [r for r in retries if r.get("movedTo")]
    if moved:
        label = f"{moved[0]['gpu']} → {label}"  # CUDA ran out of memory there; the next GPU ran it
    result = RunResult(
        runId=run_id,
        uri=uri,
        endpoint=endpoint,
        method=method,
        gpu=label,
        status="ok" if ok else "error",
        durationS=float(reply.get("duration_s") or 0.0),
        costUsd=float(reply.get("cost_usd") or 0.0),
        images=[],
        logs=[
            LogEntry(stream=str(e.get("stream", "stdout")), text=str(e.get("text", "")))
            for e in reply.get("logs") or []
            if isinstance(e, dict)
        ],
    )
    if retries:
        result["retries"] = retries
    if ok:
        value = reply.get("result")
        images: list[RunImage] = []
        shown = _extract_images(value, images, out_dir, run_id)
        result["images"] = images
        if isinstance(value, str):
            result["text"] = value
        elif isinstance(value, dict) and set(value) == {"$repr"}:
            result["text"] = str(value["$repr"])
        elif not (isinstance(value, dict) and set(value) == {"$image"}):
            result["json"] = shown
    else:
        err = reply.get("error") or {}
        frames: list[ErrorFrame] = []
        for frame in err.get("frames") or []:
            remote = str(frame.get("file", ""))
            local = local_file(remote, roots) if remote else None
            frames.append(
                ErrorFrame(
                    file=str(local) if local else remote,
                    line=int(frame.get("line") or 0),
                    name=str(frame.get("name", "")),
                )
            )
        result["error"] = RemoteError(
            type=str(err.get("type", "Error")),
            message=str(err.get("message", "")),
            traceback=str(err.get("traceback", "")),
            frames=frames,
        )
    return result


def _secret_names(facts: Any) -> tuple[str, ...]:
    """The endpoint's secrets=[...] names, from its validated spec (or the literal list)."""
    if facts.spec is not None:
        return tuple(facts.spec.secrets)
    value = facts.endpoint.value("secrets")
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, (list, tuple)) else ()


_RETRY_REASONS: dict[str, str] = {
    ErrorKind.CRASH: "worker crashed",
    ErrorKind.TIMEOUT: "timed out",
    ErrorKind.UNAVAILABLE: "runtime unavailable",
}


def _retries(raw: Any) -> list[RunRetry]:
    """The runtime's record of the attempts it ran again, with a short reason for the card."""
    out: list[RunRetry] = []
    for i, r in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(r, dict):
            continue
        kind, type_ = str(r.get("kind", "")), str(r.get("type", ""))
        gpu, moved = str(r.get("gpu", "")), r.get("moved_to")
        if kind == ErrorKind.CUDA_OOM:
            reason = f"CUDA out of memory on {gpu}" + (f", moved to {moved}" if moved else "")
        else:
            reason = _RETRY_REASONS.get(kind) or type_.rsplit(".", 1)[-1] or kind or "failed"
        item = RunRetry(
            attempt=int(r.get("attempt") or i + 1),
            reason=reason,
            type=type_,
            message=str(r.get("message", "")),
            gpu=gpu,
        )
        if moved:
            item["movedTo"] = str(moved)
        out.append(item)
    return out


def _extract_images(value: Any, images: list[RunImage], out_dir: Path, run_id: str) -> Any:
    """Replace each {"$image": {...}} with a reference to a saved PNG (collected in `images`)."""
    if isinstance(value, dict):
        if set(value) == {"$image"} and isinstance(value["$image"], dict):
            image = _save_image(value["$image"], out_dir, f"{run_id}-{len(images)}")
            if image is None:
                return value
            images.append(image)
            return {
                "$image": {
                    "index": len(images) - 1,
                    "path": image["path"],
                    "width": image["width"],
                    "height": image["height"],
                }
            }
        return {k: _extract_images(v, images, out_dir, run_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_extract_images(v, images, out_dir, run_id) for v in value]
    return value


def _save_image(data: dict[str, Any], out_dir: Path, stem: str) -> RunImage | None:
    png_b64 = data.get("png")
    if not isinstance(png_b64, str):
        return None
    try:
        png = base64.b64decode(png_b64)
    except ValueError:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.png"
    path.write_bytes(png)
    width, height = int(data.get("width") or 0), int(data.get("height") or 0)
    return RunImage(
        path=str(path),
        thumbnail="data:image/png;base64," + base64.b64encode(_thumbnail(png)).decode("ascii"),
        width=width,
        height=height,
    )


def _thumbnail(png: bytes) -> bytes:
    """A PNG at most THUMBNAIL_PX on its longer side (the image itself without Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        return png
    try:
        with Image.open(io.BytesIO(png)) as image:
            if max(image.size) <= THUMBNAIL_PX:
                return png
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
            return buffer.getvalue()
    except Exception as exc:  # a PNG Pillow cannot read: send it as it is
        log.debug("no thumbnail: %s", exc)
        return png


class _LiveLogs:
    """Follows one run's log lines on the runtime while it runs and relays them as runLog."""

    def __init__(self, notify: Callable[[str, Any], None], run_id: str) -> None:
        self.notify = notify
        self.run_id = run_id
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, client: Any) -> None:
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()

        def relay(stream: str, text: str) -> None:  # on the loop: ordered with stop()
            if self._stop.is_set():
                return  # the result's logs carry the rest
            self.sent += 1
            self.notify(
                NOTIFY_RUN_LOG,
                RunLog(
                    runId=self.run_id,
                    stream="stderr" if stream == "stderr" else "stdout",
                    text=text,
                ),
            )

        def tail() -> None:
            try:
                for e in client.logs(backlog=200, stop=self._stop, tag=self.run_id):
                    stream = "stderr" if e.get("stream") == "stderr" else "stdout"
                    if e.get("stream") in ("stdout", "stderr"):
                        loop.call_soon_threadsafe(relay, stream, str(e.get("text", "")))
            except Exception as exc:  # noqa: BLE001 - live lines are a nicety; the result has all
                log.debug("live logs of %s stopped: %s", self.run_id, exc)

        self._thread = threading.Thread(target=tail, name=f"logs-{self.run_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Called on the loop: after this, `sent` is final and no more lines are relayed."""
        self._stop.set()
