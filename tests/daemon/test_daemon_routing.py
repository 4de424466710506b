"""The editor with several runtimes ([runtimes] in slipstream.toml, docs/runtimes.md), through
the real language server: lenses and hovers name the runtime, an endpoint whose GPU no runtime
has gets a diagnostic with quick fixes, a save deploys to every runtime serving an endpoint, Run
goes to the endpoint's runtime and its result names it, and the status lists each runtime.

Two real runtimes: "gpu-box", a `slipstream serve` on loopback that believes it has an H100
(SLIPSTREAM_FAKE_GPUS), and the embedded one the daemon starts for the CPU endpoint."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon
from lsprotocol import types

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import start_runtime  # noqa: E402

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

APP = """import os

from slipstream import endpoint


@endpoint(gpu="H100", example={"x": 2})
def big(x: int) -> str:
    return "big ran at " + os.environ["SLIPSTREAM_RUNTIME_URL"]


@endpoint(example={"x": 3})
def small(x: int) -> str:
    return "small ran at " + os.environ["SLIPSTREAM_RUNTIME_URL"]


@endpoint(gpu="B200")
def nowhere() -> str:
    return "never"
"""


@pytest.fixture(scope="module")
def gpu_box() -> Any:
    rt = start_runtime(env={"SLIPSTREAM_FAKE_GPUS": "H100"})
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, gpu_box: Any) -> Path:
    root = tmp_path_factory.mktemp("routed") / "routed"
    root.mkdir()
    (root / "slipstream.toml").write_text(
        f'[project]\nname = "routed"\n\n[runtimes.gpu-box]\nurl = "{gpu_box.url}"\ntoken_env = "GPU_BOX_TOKEN"\n'
    )
    (root / "app.py").write_text(APP)
    return root.resolve()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(project: Path, gpu_box: Any) -> AsyncIterator[Client]:
    client = await start_daemon(project, {"GPU_BOX_TOKEN": gpu_box.token})
    client.open(project / "app.py")
    yield client
    await client.shutdown_session()
    await client.stop()


def _line(project: Path, text: str) -> int:
    return (project / "app.py").read_text().splitlines().index(text)


async def _lenses(client: Client, project: Path) -> dict[int, list[str]]:
    lenses = await client.text_document_code_lens_async(
        types.CodeLensParams(
            text_document=types.TextDocumentIdentifier(uri=(project / "app.py").as_uri())
        )
    )
    out: dict[int, list[str]] = {}
    for lens in lenses:
        if lens.command:
            out.setdefault(lens.range.start.line, []).append(lens.command.title)
    return out


async def test_lenses_hovers_and_diagnostics_say_where_each_endpoint_runs(
    client: Client, project: Path, gpu_box: Any
) -> None:
    status = await client.command(
        "slipstream.server.runtimeStatus"
    )  # asks each runtime for its GPUs
    runtimes = {r["name"]: r for r in status["runtimes"]}
    assert list(runtimes) == ["gpu-box", "local"]
    assert (
        runtimes["gpu-box"]["connected"] is True
        and runtimes["gpu-box"]["gpus"][0]["name"] == "H100"
    )
    assert runtimes["gpu-box"]["url"] == gpu_box.url and runtimes["local"]["kind"] == "embedded"
    lenses = await _lenses(client, project)
    assert (
        lenses[_line(project, '@endpoint(gpu="H100", example={"x": 2})')][0]
        == "▶ Run on H100 · gpu-box"
    )
    assert lenses[_line(project, '@endpoint(example={"x": 3})')][0] == "▶ Run (CPU) · local"
    assert lenses[_line(project, '@endpoint(gpu="B200")')][0] == "▶ Run on B200 · no runtime has it"

    uri = (project / "app.py").as_uri()
    hover = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(
                line=_line(project, '@endpoint(gpu="H100", example={"x": 2})'), character=2
            ),
        )
    )
    assert (
        hover is not None
        and f"Runs on runtime **gpu-box** (`{gpu_box.url}`)" in hover.contents.value
    )

    version = client.replace(uri, APP)  # diagnostics follow the inventory just asked
    found = [d for d in await client.diagnostics_for(uri, version) if d.code == "no-runtime-gpu"]
    assert len(found) == 1, found
    diag = found[0]
    assert diag.range.start.line == _line(project, '@endpoint(gpu="B200")')
    assert "asks for B200 but no runtime has it: gpu-box has H100; local has no GPU" in diag.message
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diag.range,
            context=types.CodeActionContext(diagnostics=[diag]),
        )
    )
    titles = [a.title for a in actions or []]
    assert 'Change to gpu="H100" (gpu-box has it)' in titles and "Connect a GPU machine…" in titles
    fix = next(a for a in actions if a.title.startswith("Change to"))
    (edit,) = fix.edit.changes[uri]
    assert edit.new_text == '"H100"' and edit.range.start.line == diag.range.start.line
    connect = next(a for a in actions if a.title == "Connect a GPU machine…")
    assert "'command': 'slipstream.connectMachine'" in str(
        connect.command
    )  # the extension's command (the test client keeps it plain)


async def _run(client: Client, uri: str, endpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    started_seen = len(client.notes_of("slipstream/runStarted"))
    results_seen = len(client.notes_of("slipstream/runResult"))
    reply = await client.command("slipstream.server.run", {"uri": uri, "endpoint": endpoint})
    started = await client.next_note(
        "slipstream/runStarted", since=started_seen, runId=reply["runId"]
    )
    result = await client.next_note(
        "slipstream/runResult", timeout=180, since=results_seen, runId=reply["runId"]
    )
    return started, result


async def test_runs_go_to_the_endpoints_runtime_and_say_which(
    client: Client, project: Path, gpu_box: Any
) -> None:
    uri = (project / "app.py").as_uri()
    started, result = await _run(client, uri, "big")
    assert result["status"] == "ok", result
    assert started["runtime"] == "gpu-box" and result["runtime"] == "gpu-box"
    assert result["text"] == f"big ran at {gpu_box.url}"
    assert result["costUsd"] > 0  # an H100's price on gpu-box
    started, result = await _run(client, uri, "small")
    assert result["status"] == "ok", result
    assert started["runtime"] == "local" and result["runtime"] == "local"
    local_url = result["text"].removeprefix("small ran at ")
    assert local_url.startswith("http://127.0.0.1:") and local_url != gpu_box.url
    _, result = await _run(client, uri, "nowhere")
    assert result["status"] == "error" and result["error"]["type"] == "NoRuntimeForGpu"
    assert "gpu-box has H100" in result["error"]["message"]
    status = await client.command("slipstream.server.runtimeStatus")
    by_name = {r["name"]: r for r in status["runtimes"]}
    assert by_name["gpu-box"]["endpoints"] == ["big"] and by_name["local"]["endpoints"] == ["small"]
    assert by_name["gpu-box"]["spendUsd"] > 0 and by_name["local"]["connected"] is True


async def test_a_save_deploys_to_every_runtime_serving_an_endpoint(
    client: Client, project: Path, gpu_box: Any
) -> None:
    path = project / "app.py"
    text = APP.replace('"big ran at "', '"big (edited) ran at "').replace(
        '"small ran at "', '"small (edited) ran at "'
    )
    path.write_text(text)
    client.replace(path.as_uri(), text)
    seen = len(client.notes_of("slipstream/deployResult"))
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri())
        )
    )
    deployed = await client.next_note("slipstream/deployResult", since=seen, timeout=120)
    assert deployed["ok"] is True, deployed
    _, result = await _run(client, path.as_uri(), "big")
    assert result["text"] == f"big (edited) ran at {gpu_box.url}"
    _, result = await _run(client, path.as_uri(), "small")
    assert result["text"].startswith("small (edited) ran at http://127.0.0.1:")


async def test_without_runtimes_the_lenses_say_no_runtime_again(
    client: Client, project: Path
) -> None:
    """Disconnect takes [runtimes] out of slipstream.toml and asks for the status with the
    project's file: lenses and the status follow at once (one runtime again, no suffix)."""
    uri = (project / "app.py").as_uri()
    assert [d for d in await client.diagnostics_for(uri) if d.code == "no-runtime-gpu"], (
        "the B200 warning stands before"
    )
    toml = project / "slipstream.toml"
    toml.write_text('[project]\nname = "routed"\n')
    status = await client.command("slipstream.server.runtimeStatus", {"uri": toml.as_uri()})
    assert "runtimes" not in status
    lenses = await _lenses(client, project)
    assert lenses[_line(project, '@endpoint(gpu="H100", example={"x": 2})')][0] == "▶ Run on H100"
    # the open file's diagnostics are published again without an edit: the warning is gone
    deadline = asyncio.get_running_loop().time() + 15
    while [d for d in await client.diagnostics_for(uri) if d.code == "no-runtime-gpu"]:
        assert asyncio.get_running_loop().time() < deadline, (
            "the no-runtime-gpu warning stayed after [runtimes] went away"
        )
        await asyncio.sleep(0.05)
