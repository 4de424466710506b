"""The Debug lens through the real language server, against a real runtime: a "⚙ Debug" lens
sits next to each Run lens; its command deploys the code and answers with a DAP relay port; a
breakpoint set by local path stops the worker at that line with the example's argument; after
Continue the run card (slipstream/runResult) arrives as the Run lens's does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon
from lsprotocol import types

from slipstream_daemon import protocol
from slipstream_daemon.lenses import DEBUG_TITLE
from tests.debug.dap import DapClient

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


@pytest.fixture(scope="module")
def project(project_copy: Callable[[str], Path]) -> Path:
    return project_copy("runapp")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(project: Path, runtime: Any) -> AsyncIterator[Client]:
    client = await start_daemon(
        project, {"SLIPSTREAM_RUNTIME_URL": runtime.url, "SLIPSTREAM_TOKEN": runtime.token}
    )
    client.open(project / "app.py")
    yield client
    await client.shutdown_session()
    await client.stop()


async def test_debug_lens_stops_at_the_local_breakpoint_and_the_run_card_follows(
    client: Client, project: Path
) -> None:
    app = project / "app.py"
    uri = app.as_uri()
    lenses = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    greet_line = next(
        i
        for i, line in enumerate(app.read_text().splitlines())
        if line.startswith('@endpoint(example={"name"')
    )
    here = [lens.command for lens in lenses if lens.command and lens.range.start.line == greet_line]
    debug = next(c for c in here if c.title == DEBUG_TITLE)
    assert [c.title for c in here].index(DEBUG_TITLE) == 1, "right after Run"
    assert debug.command == protocol.CMD_DEBUG and list(debug.arguments) == [
        {"uri": uri, "endpoint": "greet"}
    ]
    results_seen = len(client.notes_of("slipstream/runResult"))
    started = await client.command(protocol.CMD_DEBUG, debug.arguments[0])
    assert started["localRoot"] == str(project) and started["remoteRoot"] != str(project)
    bp = next(
        i
        for i, line in enumerate(app.read_text().splitlines(), 1)
        if 'return f"Hello, {name}!"' in line
    )
    dap = await asyncio.to_thread(DapClient.tcp, started["port"])
    try:
        await asyncio.to_thread(
            dap.start, {str(app): [bp]}
        )  # no pathMappings: the daemon's relay adds them
        stopped = await asyncio.to_thread(dap.event, "stopped")
        frame = await asyncio.to_thread(dap.top_frame, stopped["threadId"])
        assert (frame["source"]["path"], frame["line"]) == (str(app), bp)
        assert (await asyncio.to_thread(dap.locals, frame["id"]))["name"] == "'world'"
        await asyncio.to_thread(dap.request, "continue", threadId=stopped["threadId"])
        await asyncio.to_thread(dap.event, "terminated")
    finally:
        dap.close()
    result = await client.next_note(
        "slipstream/runResult", timeout=60, since=results_seen, runId=started["runId"]
    )
    assert (
        result["status"] == "ok"
        and result["text"] == "Hello, world!"
        and result["endpoint"] == "greet"
    )
