"""Save-to-deploy and runs against a real runtime (`slipstream serve` on loopback).

The daemon gets the runtime through SLIPSTREAM_RUNTIME_URL / SLIPSTREAM_TOKEN, as a user with a
remote runtime would configure it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon
from lsprotocol import types

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

DEPLOY = "slipstream/deployResult"
RESULT = "slipstream/runResult"


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


def _save(client: Client, path: Path, text: str | None = None) -> None:
    uri = path.as_uri()
    if text is not None:
        path.write_text(text)
        client.replace(uri, text)
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def test_save_deploys_with_progress(client: Client, project: Path) -> None:
    waiting = asyncio.ensure_future(client.next_note(DEPLOY))
    _save(client, project / "app.py")
    result = await waiting
    assert result["ok"] is True, result
    assert result["generation"]
    assert str(project / "app.py") in result["changed"]
    assert result["durationMs"] < 30_000
    progress = [v for k, v in client.progress_reports.items() if str(k).startswith("slipstream")]
    assert progress, "the deploy reported no workDoneProgress"
    kinds = [value.kind for value in progress[-1]]
    assert kinds[0] == "begin" and kinds[-1] == "end" and set(kinds[1:-1]) <= {"report"}
    assert progress[-1][-1].message.startswith("Deployed generation")
    status = await client.command("slipstream.server.runtimeStatus")
    assert status["kind"] == "remote" and status["connected"] is True
    assert status["endpoints"] == 5


async def test_the_editor_holds_its_deployed_projects_workers_warm(
    client: Client, project: Path, runtime: Any
) -> None:
    import httpx

    from slipstream.sdk.config import find_project_root, project_key

    await client.command("slipstream.server.runtimeStatus")  # after the deploy of the test above
    r = httpx.get(
        f"{runtime.url}/v1/projects", headers={"Authorization": f"Bearer {runtime.token}"}
    )
    key = project_key(find_project_root(project / "app.py"))
    (mine,) = [p for p in r.json()["projects"] if p["key"] == key]
    assert [s["client"] for s in mine["sessions"]] == ["editor"], (
        "a dev session: each endpoint keeps a warm worker past its idle_timeout"
    )


async def test_broken_save_is_a_diagnostic_at_its_line(client: Client, project: Path) -> None:
    path = project / "app.py"
    good = path.read_text()
    broken = good.replace('    print(f"greeting {name}")\n', "") + "\nlimit = undefined_name + 1\n"
    bad_line = broken.splitlines().index("limit = undefined_name + 1")
    waiting = asyncio.ensure_future(client.next_note(DEPLOY))
    _save(client, path, broken)
    result = await waiting
    assert result["ok"] is False
    assert result["error"]["type"] == "NameError"
    assert result["error"]["file"] == str(path)
    assert result["error"]["line"] == bad_line + 1
    uri = path.as_uri()
    for _ in range(100):
        found = [d for d in client.diagnostics.get(uri, []) if d.code == "deploy-error"]
        if found:
            break
        await asyncio.sleep(0.05)
    [diagnostic] = found
    assert diagnostic.range.start.line == bad_line
    assert "undefined_name" in diagnostic.message

    waiting = asyncio.ensure_future(client.next_note(DEPLOY))
    _save(client, path, good)
    assert (await waiting)["ok"] is True
    for _ in range(100):
        if not [d for d in client.diagnostics.get(uri, []) if d.code == "deploy-error"]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the deploy error stayed after a good deploy")


async def _run(client: Client, uri: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    started_seen = len(client.notes_of("slipstream/runStarted"))
    results_seen = len(client.notes_of(RESULT))
    reply = await client.command(
        "slipstream.server.run", {"uri": uri, "endpoint": endpoint, **extra}
    )
    run_id = reply["runId"]
    started = await client.next_note("slipstream/runStarted", since=started_seen, runId=run_id)
    assert started["endpoint"] == endpoint and started["uri"] == uri
    return await client.next_note(RESULT, timeout=120, since=results_seen, runId=run_id)


async def test_run_returns_text_logs_and_timing(client: Client, project: Path) -> None:
    uri = (project / "app.py").as_uri()
    result = await _run(client, uri, "greet")
    assert result["status"] == "ok", result
    assert result["text"] == "Hello, world!"
    assert result["gpu"] == "CPU" and result["costUsd"] == 0
    assert result["durationS"] > 0
    assert any("greeting world" in log["text"] for log in result["logs"])
    logs = [n for n in client.notes_of("slipstream/runLog") if n["runId"] == result["runId"]]
    assert any("greeting world" in n["text"] for n in logs)
    again = await _run(client, uri, "greet", kwargs={"name": "Ada"})
    assert again["text"] == "Hello, Ada!"
    lenses = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    titles = [lens.command.title for lens in lenses if lens.command and lens.range.start.line == 7]
    assert titles[:2] == ["▶ Run (CPU)", "⚙ Debug"]
    assert titles[2].startswith("last ") and titles[2].endswith(" = $0")
    hover = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=7, character=2),
        )
    )
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    assert "Measured: last call" in hover.contents.value
    assert "2 call(s)" in hover.contents.value


async def test_gpu_run_is_priced_and_shown_on_the_lens(client: Client, project: Path) -> None:
    path = project / "app.py"
    result = await _run(client, path.as_uri(), "squares")
    assert result["status"] == "ok", result
    assert result["json"] == {"squares": [0, 1, 4]}
    assert result["gpu"] == "L4 → CPU", "the card says the L4 endpoint ran on the CPU here"
    assert result["costUsd"] > 0
    line = path.read_text().splitlines().index('@endpoint(gpu="L4", example={"n": 3})')
    lenses = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=path.as_uri()))
    )
    titles = [
        lens.command.title for lens in lenses if lens.command and lens.range.start.line == line
    ]
    assert titles[:2] == ["▶ Run on L4", "⚙ Debug"]
    assert titles[2].startswith("$0.00019/s · last ")


async def test_run_returns_an_image(client: Client, project: Path) -> None:
    from PIL import Image

    result = await _run(client, (project / "app.py").as_uri(), "picture")
    assert result["status"] == "ok", result
    [image] = result["images"]
    assert (image["width"], image["height"]) == (300, 150)
    path = Path(image["path"])
    assert path.is_file() and path.is_relative_to(project / ".cache" / "outputs")
    with Image.open(path) as full:
        assert full.size == (300, 150)
    assert image["thumbnail"].startswith("data:image/png;base64,")
    thumb = base64.b64decode(image["thumbnail"].split(",", 1)[1])
    with Image.open(io.BytesIO(thumb)) as small:
        assert small.size == (256, 128)
    assert "json" not in result and "text" not in result


async def test_remote_exception_points_at_the_local_line(client: Client, project: Path) -> None:
    path = project / "app.py"
    result = await _run(client, path.as_uri(), "divide")
    assert result["status"] == "error"
    error = result["error"]
    assert error["type"] == "ZeroDivisionError"
    line = path.read_text().splitlines().index("    return 1 / x") + 1
    assert {"file": str(path), "line": line, "name": "_invert"} in error["frames"]
    for _ in range(100):
        found = [
            d for d in client.diagnostics.get(path.as_uri(), []) if d.code == "remote-exception"
        ]
        if found:
            break
        await asyncio.sleep(0.05)
    [diagnostic] = found
    assert diagnostic.range.start.line == line - 1
    assert diagnostic.message.startswith("ZeroDivisionError: division by zero")


async def test_outside_change_is_deployed(client: Client, project: Path) -> None:
    extra = project / "later.py"
    waiting = asyncio.ensure_future(client.next_note(DEPLOY, timeout=30))
    extra.write_text(
        "from slipstream import endpoint\n\n\n@endpoint\ndef later() -> int:\n    return 7\n"
    )
    os.utime(extra)
    result = await waiting
    assert result["ok"] is True
    assert str(extra) in result["changed"]


async def test_outside_change_to_an_included_data_file_is_deployed(
    client: Client, project: Path
) -> None:
    """A file synced only because `[sync] include` names it counts as a change too."""
    config = project / "slipstream.toml"
    config.write_text(config.read_text() + '\n[sync]\ninclude = ["*.html"]\n')
    page = project / "page.html"
    page.write_text("<p>one</p>\n")
    _save(client, project / "app.py")
    first = await client.next_note(DEPLOY, timeout=30)
    assert first["ok"] is True, first
    waiting = asyncio.ensure_future(client.next_note(DEPLOY, timeout=30))
    page.write_text("<p>two</p>\n")
    result = await waiting
    assert result["ok"] is True, result
    assert str(page) in result["changed"]


async def test_running_an_unsaved_endpoint_says_to_save(client: Client, project: Path) -> None:
    path = project / "app.py"
    saved = path.read_text()
    unsaved = saved + '\n\n@endpoint\ndef brand_new() -> str:\n    return "new"\n'
    client.replace(path.as_uri(), unsaved)
    try:
        result = await _run(client, path.as_uri(), "brand_new")
        assert result["status"] == "error"
        assert "save the file that defines 'brand_new'" in result["error"]["message"]
    finally:
        client.replace(path.as_uri(), saved)


async def test_run_logs_arrive_while_the_run_is_going(client: Client, project: Path) -> None:
    uri = (project / "app.py").as_uri()
    logs_seen = len(client.notes_of("slipstream/runLog"))
    results_seen = len(client.notes_of(RESULT))
    reply = await client.command("slipstream.server.run", {"uri": uri, "endpoint": "countdown"})
    first = await client.next_note(
        "slipstream/runLog", timeout=60, since=logs_seen, runId=reply["runId"]
    )
    assert first["text"].startswith("T-3")
    assert not [
        n for n in client.notes_of(RESULT)[results_seen:] if n["runId"] == reply["runId"]
    ], "the first line must arrive before the run ends"
    result = await client.next_note(RESULT, timeout=60, since=results_seen, runId=reply["runId"])
    assert result["text"] == "liftoff"
    lines = [
        n["text"]
        for n in client.notes_of("slipstream/runLog")[logs_seen:]
        if n["runId"] == reply["runId"]
    ]
    assert [t.strip() for t in lines] == ["T-3", "T-2", "T-1"], "each line once, in order"


PAINTER = """
from slipstream import endpoint

print("painter module imported")

@endpoint(workers=(0, 1))
class Painter:
    def setup(self):
        print("loading model...")

    def paint(self, prompt: str = "a heron") -> str:
        print("painting", prompt)
        return prompt + " in oil"
"""


async def test_a_run_card_shows_setup_output_once_labelled(client: Client, project: Path) -> None:
    path = project / "painter.py"
    path.write_text(PAINTER)
    client.open(path)
    waiting = asyncio.ensure_future(client.next_note(DEPLOY))
    _save(client, path)
    assert (await waiting)["ok"] is True
    uri = path.as_uri()
    logs_seen = len(client.notes_of("slipstream/runLog"))
    first = await _run(client, uri, "Painter", method="paint")
    assert first["status"] == "ok" and first["text"] == "a heron in oil", first
    expected = ["[Painter import] painter module imported", "[Painter setup] loading model..."]
    assert [e["text"].strip() for e in first["logs"]] == [*expected, "painting a heron"]
    live = [
        n["text"].strip()
        for n in client.notes_of("slipstream/runLog")[logs_seen:]
        if n["runId"] == first["runId"]
    ]
    assert live == [*expected, "painting a heron"], "each line once, in order, in the card"
    again = await _run(client, uri, "Painter", method="paint", kwargs={"prompt": "a fox"})
    assert [e["text"].strip() for e in again["logs"]] == ["painting a fox"], "setup ran once"
