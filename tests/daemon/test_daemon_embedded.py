"""No runtime configured: the daemon starts the embedded local runtime on first need, and
selectRuntime switches between it and a remote one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

STATUS = "slipstream/runtimeStatus"
RESULT = "slipstream/runResult"


@pytest.fixture(scope="module")
def project(project_copy: Callable[[str], Path]) -> Path:
    return project_copy("runapp")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(project: Path) -> AsyncIterator[Client]:
    client = await start_daemon(project)  # no SLIPSTREAM_RUNTIME_URL
    client.open(project / "app.py")
    yield client
    embedded = {n["url"] for n in client.notes_of(STATUS) if n["kind"] == "embedded" and n["url"]}
    await client.shutdown_session()
    await client.stop()
    # shutting the daemon down stops the embedded runtimes it started
    for url in embedded:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)


async def _run_greet(client: Client, project: Path, name: str) -> dict[str, Any]:
    seen = len(client.notes_of(RESULT))
    reply = await client.command(
        "slipstream.server.run",
        {"uri": (project / "app.py").as_uri(), "endpoint": "greet", "kwargs": {"name": name}},
    )
    return await client.next_note(RESULT, timeout=120, since=seen, runId=reply["runId"])


async def test_first_run_starts_the_embedded_runtime(client: Client, project: Path) -> None:
    seen = len(client.notes_of(STATUS))
    result = await _run_greet(client, project, "embedded")
    assert result["status"] == "ok", result
    assert result["text"] == "Hello, embedded!"
    status = await client.next_note(STATUS, since=seen, connected=True)
    assert status["kind"] == "embedded"
    assert status["url"].startswith("http://127.0.0.1:")
    assert isinstance(status["gpus"], list)


async def test_select_a_remote_runtime_then_back(
    client: Client, project: Path, runtime: Any
) -> None:
    status = await client.command(
        "slipstream.server.selectRuntime", {"url": runtime.url, "token": runtime.token}
    )
    assert status["kind"] == "remote" and status["url"] == runtime.url
    assert status["connected"] is True
    # the code is pushed to the new runtime before the call
    result = await _run_greet(client, project, "remote")
    assert result["text"] == "Hello, remote!"
    status = await client.command("slipstream.server.runtimeStatus")
    assert status["url"] == runtime.url and status["endpoints"] == 5

    bad = await client.command(
        "slipstream.server.selectRuntime", {"url": "http://127.0.0.1:9", "token": "x"}
    )
    assert bad["connected"] is False and bad["kind"] == "remote"
    failed = await _run_greet(client, project, "nobody")
    assert failed["status"] == "error"
    assert "no Slipstream runtime answered" in failed["error"]["message"]

    status = await client.command("slipstream.server.selectRuntime", {"embedded": True})
    assert status["kind"] == "embedded" and status["connected"] is True
    result = await _run_greet(client, project, "back")
    assert result["text"] == "Hello, back!"
