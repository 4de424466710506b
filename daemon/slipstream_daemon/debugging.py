"""The debug command: the call the Run lens makes, under the debugger on the runtime.

`slipstream.server.debug {uri, endpoint, method?, kwargs?}` deploys the current code (as Run
does), starts the call on the runtime stopped for a debugger (`slipstream.sdk.debug.start`),
and opens a relay on 127.0.0.1 for the editor's debug adapter connection; it answers
{runId, port, session, remoteRoot, localRoot, call}. The relay completes the editor's attach
request with the path mappings from the project root here to the worker's copy. When the call
finishes (the user pressed Continue), its result arrives as the Run lens's does:
`slipstream/runStarted`, `slipstream/runLog`, `slipstream/runResult`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import cache_dir, uri_to_path
from .protocol import NOTIFY_RUN_RESULT, NOTIFY_RUN_STARTED, RunStarted
from .runs import RunRequestError, _LiveLogs, _secret_names, display_result

if TYPE_CHECKING:
    from .costs import CostBook
    from .deploy import Deployer
    from .documents import Documents
    from .runs import Runner
    from .runtime import RuntimeManager

__all__ = ["Debugging"]

log = logging.getLogger(__name__)

RESULT_POLL_S = (
    30.0  # one GET /v1/calls/{id}?wait= at a time; a debugged call may stay stopped for long
)


class DebugStartError(ValueError):
    """The call could not be started under the debugger (deploy refused, bad arguments...)."""


class Debugging:
    """Starts calls under the debugger and reports them as runs. documents, runtime, deployer,
    costs, notify, project_root and ran as for runs.Runner; runner: its default method and
    remote-exception diagnostics, shared with Run."""

    def __init__(
        self,
        documents: Documents,
        runtime: RuntimeManager,
        deployer: Deployer,
        runner: Runner,
        *,
        costs: CostBook,
        notify: Callable[[str, Any], None],
        project_root: Callable[[Path], Path],
        ran: Callable[[], Awaitable[None]],
    ) -> None:
        self.documents = documents
        self.runtime = runtime
        self.deployer = deployer
        self.runner = runner
        self.costs = costs
        self.notify = notify
        self.project_root = project_root
        self.ran = ran
        self._tasks: set[asyncio.Task[None]] = set()
        self._relays: set[Any] = set()

    async def start(self, args: dict[str, Any]) -> dict[str, Any]:
        from slipstream.sdk import debug as sdk_debug
        from slipstream.sdk.config import project_key

        uri, name = args.get("uri"), args.get("endpoint")
        if not uri or not name:
            raise RunRequestError("debug needs {uri, endpoint}")
        index = await self.documents.get(uri)
        ep = index.endpoint(name)
        if ep is None:
            raise RunRequestError(f"no endpoint named {name!r} in {uri}")
        method = args.get("method") or None
        if ep.kind == "class" and method is None:
            method = self.runner.default_method(ep)
        from .facts import facts_for

        facts = facts_for(ep)
        kwargs = args.get("kwargs")
        if kwargs is None:
            kwargs = facts.example_for(method) or {}
        kwargs = dict(kwargs)
        run_id = uuid.uuid4().hex[:12]
        path = uri_to_path(uri)
        root = self.project_root(path) if path else None
        self.notify(
            NOTIFY_RUN_STARTED,
            RunStarted(
                runId=run_id,
                uri=uri,
                endpoint=ep.name,
                method=method,
                gpu=facts.gpu_label,
                startedAt=time.time(),
            ),
        )
        secrets = _secret_names(facts)
        if secrets:
            from slipstream.sdk.secretvals import SECRETS_KEY, resolve

            try:
                kwargs = {**kwargs, SECRETS_KEY: resolve(secrets, ep.name, root)}
            except Exception as exc:  # noqa: BLE001 - a missing secret: before the call, nothing runs
                await self._failed(
                    run_id, uri, ep.name, method, facts.gpu_label, root, "MissingSecret", str(exc)
                )
        client = await self.runtime.ensure(root)
        if root is not None:
            deployed = await self.deployer.ensure_deployed(root)
            if not deployed["ok"]:
                err = deployed.get("error") or {}
                await self._failed(
                    run_id,
                    uri,
                    ep.name,
                    method,
                    facts.gpu_label,
                    root,
                    err.get("type", "DeployError"),
                    f"the code could not be deployed: {err.get('message', '')}",
                )
        project = project_key(root) if root is not None else None
        live = _LiveLogs(self.notify, run_id)
        live.start(client)
        try:
            started = await asyncio.to_thread(
                sdk_debug.start, client, ep.name, kwargs, method, None, project, run_id
            )
        except Exception as exc:  # noqa: BLE001 - shown on the run card and to the debug adapter
            live.stop()
            await self._failed(
                run_id, uri, ep.name, method, facts.gpu_label, root, type(exc).__name__, str(exc)
            )
        relay = sdk_debug.Relay(client, started, local_root=str(root) if root else None).start()
        self._relays.add(relay)
        task = asyncio.ensure_future(
            self._finish(
                run_id,
                uri,
                ep.name,
                method,
                facts.gpu_label,
                root,
                client,
                started["call"],
                relay,
                live,
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {
            "runId": run_id,
            "port": relay.port,
            "session": started["session"],
            "remoteRoot": started.get("remoteRoot", ""),
            "localRoot": str(root) if root else "",
            "call": started["call"],
        }

    async def _finish(
        self,
        run_id: str,
        uri: str,
        endpoint: str,
        method: str | None,
        gpu: str,
        root: Any,
        client: Any,
        call: str,
        relay: Any,
        live: Any,
    ) -> None:
        from slipstream.sdk import debug as sdk_debug

        try:
            while True:
                reply = await asyncio.to_thread(sdk_debug.result, client, call, RESULT_POLL_S)
                if reply.get("status") not in ("queued", "running"):
                    break
        except Exception as exc:  # noqa: BLE001 - the card says what happened
            reply = {
                "ok": False,
                "error": {"type": type(exc).__name__, "message": str(exc), "traceback": ""},
            }
        finally:
            await asyncio.to_thread(relay.closed.wait, 10)
            relay.close()
            self._relays.discard(relay)
        await self._report(run_id, uri, endpoint, method, gpu, root, reply, live)

    async def _report(
        self,
        run_id: str,
        uri: str,
        endpoint: str,
        method: str | None,
        gpu: str,
        root: Any,
        reply: dict[str, Any],
        live: Any = None,
    ) -> None:
        if live is not None:
            live.stop()
        result = await asyncio.to_thread(
            display_result,
            reply,
            run_id,
            uri,
            endpoint,
            method,
            gpu,
            [root] if root else [],
            cache_dir() / "outputs",
        )
        if result["status"] == "ok":
            self.costs.record(endpoint, result["durationS"], result["costUsd"])
        await self.runner.report_error(endpoint, method, result)
        self.notify(NOTIFY_RUN_RESULT, result)
        await self.ran()

    async def _failed(
        self,
        run_id: str,
        uri: str,
        endpoint: str,
        method: str | None,
        gpu: str,
        root: Any,
        type_: str,
        message: str,
    ) -> None:
        """The call never reached the debugger: its card says why, and so does the error."""
        await self._report(
            run_id,
            uri,
            endpoint,
            method,
            gpu,
            root,
            {"ok": False, "error": {"type": type_, "message": message, "traceback": ""}},
        )
        raise DebugStartError(f"{type_}: {message}")

    async def close(self) -> None:
        for relay in list(self._relays):
            relay.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
