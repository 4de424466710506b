"""Project shapes through the language server's save path (a real daemon, pytest-lsp).

The daemon finds each project's root from the saved file the way Python finds the package top
(no config file), deploys on save to a served runtime, and the editor's Run returns the new
content after every save; a stdlib-named module is a deploy error on that file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from project_shapes import ProjectDir, make_project

from tests.daemon.daemon_client import Client, start_daemon

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

DEPLOY = "slipstream/deployResult"
RESULT = "slipstream/runResult"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace").resolve()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(workspace: Path, runtime: Any) -> AsyncIterator[Client]:
    client = await start_daemon(
        workspace, {"SLIPSTREAM_RUNTIME_URL": runtime.url, "SLIPSTREAM_TOKEN": runtime.token}
    )
    yield client
    await client.shutdown_session()
    await client.stop()


async def _save(
    client: Client, proj: ProjectDir, rel: str, old: str | None = None, new: str = ""
) -> dict:
    """Edit (optionally), save as the editor does, and wait for that save's deploy result."""
    path = proj.root / rel
    uri = path.as_uri()
    if uri not in client.versions:
        client.open(path)
    if old is not None:
        proj.edit(rel, old, new)
        client.replace(uri, path.read_text())
    since = len(client.notes_of(DEPLOY))
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    return await client.next_note(DEPLOY, since=since, timeout=90)


async def _run(client: Client, path: Path, endpoint: str, **kwargs: Any) -> dict:
    since = len(client.notes_of(RESULT))
    reply = await client.command(
        "slipstream.server.run", {"uri": path.as_uri(), "endpoint": endpoint, "kwargs": kwargs}
    )
    return await client.next_note(RESULT, timeout=120, since=since, runId=reply["runId"])


async def test_package_saves_through_the_editor(
    client: Client, workspace: Path, runtime: Any
) -> None:
    proj = make_project(workspace, "package")
    first = await _save(client, proj, "app/a.py")
    assert first["ok"] is True, first
    assert proj.call(runtime, "hello", "ada") == "hello ada v0"
    for i in range(1, 6):
        result = await _save(client, proj, "app/a.py", f"VERSION = {i - 1}", f"VERSION = {i}")
        assert result["ok"] is True, result
        assert str(proj.root / "app/a.py") in result["changed"]
        run = await _run(client, proj.root / "app/a.py", "hello", name="ada")
        assert run["status"] == "ok" and run["text"] == f"hello ada v{i}", run
    result = await _save(client, proj, "app/shared.py", 'GREETING = "hello"', 'GREETING = "yo"')
    assert result["ok"] is True, result
    run = await _run(client, proj.root / "app/b.py", "nested")
    assert run["status"] == "ok" and run["text"] == "deep yo", run


async def test_namespace_package_with_pyproject_through_the_editor(
    client: Client, workspace: Path, runtime: Any
) -> None:
    # with no __init__.py anywhere, a pyproject.toml marks the root the modules are named from
    proj = make_project(workspace, "namespace")
    proj.write("pyproject.toml", '[project]\nname = "ns-tools"\nversion = "0"\n')
    result = await _save(client, proj, "ns/tools/work.py")
    assert result["ok"] is True, result
    run = await _run(client, proj.root / "ns/tools/work.py", "wrap", x="q")
    assert run["status"] == "ok" and run["text"] == "<q> from ns.tools.helpers", run
    result = await _save(client, proj, "ns/tools/helpers.py", 'f"<{x}>"', 'f"({x})"')
    assert result["ok"] is True, result
    run = await _run(client, proj.root / "ns/tools/work.py", "wrap", x="q")
    assert run["text"] == "(q) from ns.tools.helpers", run


async def test_src_layout_through_the_editor(client: Client, workspace: Path) -> None:
    proj = make_project(workspace, "src_layout")
    assert (await _save(client, proj, "src/mypkg/model.py"))["ok"] is True
    run = await _run(client, proj.root / "src/mypkg/model.py", "predict", x="sun")
    assert run["status"] == "ok" and run["text"] == "PREDICTED SUN/mypkg.util", run
    result = await _save(client, proj, "src/mypkg/util.py", "s.upper()", "s.lower()")
    assert result["ok"] is True, result
    run = await _run(client, proj.root / "src/mypkg/model.py", "predict", x="SUN")
    assert run["text"] == "predicted sun/mypkg.util", run


async def test_data_file_edit_reaches_the_editor_run(client: Client, workspace: Path) -> None:
    proj = make_project(workspace, "data_files")
    assert (await _save(client, proj, "app/paint.py"))["ok"] is True
    since = len(client.notes_of(DEPLOY))
    proj.write(
        "app/prompts.txt", "a kite\n"
    )  # not open in the editor: the daemon's watcher deploys it
    result = await client.next_note(DEPLOY, since=since, timeout=90)
    assert result["ok"] is True, result
    run = await _run(client, proj.root / "app/paint.py", "paint")
    assert run["status"] == "ok" and run["text"] == "a kite in oil", run


async def test_stdlib_named_module_is_a_deploy_error_on_that_file(
    client: Client, workspace: Path
) -> None:
    proj = make_project(workspace, "stdlib_named")
    result = await _save(client, proj, "main.py")
    assert result["ok"] is False
    assert result["error"]["file"] == str(proj.root / "calendar.py"), result
    assert "standard-library module 'calendar'" in result["error"]["message"]
    uri = (proj.root / "calendar.py").as_uri()
    for _ in range(100):
        found = [d for d in client.diagnostics.get(uri, []) if d.code == "deploy-error"]
        if found:
            break
        await asyncio.sleep(0.05)
    assert found and "Rename it" in found[0].message
