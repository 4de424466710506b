"""A runtime that restarts under the editor: the daemon resyncs and the next run just works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_client import start_daemon

from tests.conftest import start_runtime

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]
RESULT = "slipstream/runResult"


async def _run(client, uri: str, endpoint: str) -> dict:
    seen = len(client.notes_of(RESULT))
    reply = await client.command("slipstream.server.run", {"uri": uri, "endpoint": endpoint})
    return await client.next_note(RESULT, timeout=120, since=seen, runId=reply["runId"])


async def test_runs_carry_on_after_the_runtime_restarts(
    project_copy: Callable[[str], Path],
) -> None:
    project = project_copy("runapp")
    rt = start_runtime()
    port = rt.url.rsplit(":", 1)[1]
    client = await start_daemon(
        project, {"SLIPSTREAM_RUNTIME_URL": rt.url, "SLIPSTREAM_TOKEN": rt.token}
    )
    try:
        uri = client.open(project / "app.py")
        assert (await _run(client, uri, "greet"))["text"] == "Hello, world!"
        rt.proc.kill()  # no goodbye: the runtime and all it held are gone
        rt.proc.wait()
        rt = start_runtime("--port", port, token=rt.token)
        again = await _run(client, uri, "greet")
        assert again["status"] == "ok", again
        assert again["text"] == "Hello, world!"
    finally:
        await client.shutdown_session()
        await client.stop()
        rt.stop()
