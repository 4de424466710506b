"""Starting the daemon: the `slipstream daemon` command works over stdio, starts quickly, and
never imports the model stack (torch, diffusers, transformers, numpy)."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon
from lsprotocol import types


@pytest.fixture(scope="module")
def project(project_copy: Callable[[str], Path]) -> Path:
    return project_copy("editing")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cli_daemon(project: Path) -> AsyncIterator[tuple[Client, float]]:
    started = time.perf_counter()
    client = await start_daemon(project, command=[sys.executable, "-m", "slipstream", "daemon"])
    elapsed = time.perf_counter() - started
    yield client, elapsed
    await client.shutdown_session()
    await client.stop()


@pytest.mark.asyncio(loop_scope="module")
async def test_slipstream_daemon_command_serves_lenses(
    cli_daemon: tuple[Client, float], project: Path
) -> None:
    client, elapsed = cli_daemon
    print(f"initialize answered {elapsed * 1000:.0f} ms after the process started")
    assert elapsed < 20  # generous: this machine is shared; typically well under 2 s
    uri = client.open(project / "pipeline.py")
    lenses = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert any(lens.command and lens.command.title == "▶ Run on H100" for lens in lenses)
    # the server only writes the protocol to stdout: a stray print would have broken the session
    assert client.error is None


def _mapped_libraries(pid: int) -> set[str]:
    """The shared objects a live process has mapped: every C extension it imported is here."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {line.split()[-1] for line in maps.splitlines() if line.split()[-1].startswith("/")}


HEAVY_LIBRARIES = {  # what importing each package (or anything that imports it) maps
    "numpy": "_multiarray_umath",
    "torch": "libtorch",
}


@pytest.mark.asyncio(loop_scope="module")
async def test_no_model_stack_imported(cli_daemon: tuple[Client, float], project: Path) -> None:
    """Ask the real daemon, after real requests of every kind, what it has loaded.

    transformers and diffusers import torch and numpy, so the two libraries cover all four."""
    client, _ = cli_daemon
    for name in ("pipeline.py", "problems.py", "helpers.py"):
        path = project / name
        uri = client.open(path)
        assert await client.diagnostics_for(uri, version=1) is not None
        doc = types.TextDocumentIdentifier(uri=uri)
        await client.text_document_code_lens_async(types.CodeLensParams(text_document=doc))
        for line in range(len(path.read_text().splitlines())):
            pos = types.Position(line=line, character=1)
            await client.text_document_hover_async(
                types.HoverParams(text_document=doc, position=pos)
            )
            await client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=doc,
                    range=types.Range(start=pos, end=pos),
                    context=types.CodeActionContext(diagnostics=[]),
                )
            )
        version = client.replace(uri, path.read_text() + "\n# edited\n")
        await client.diagnostics_for(uri, version=version)
    pipeline = (project / "pipeline.py").as_uri()
    alternatives = await client.command(
        "slipstream.server.modelAlternatives", {"uri": pipeline, "endpoint": "write_prompt"}
    )
    assert alternatives, "the swap list was computed"
    await client.command("slipstream.server.runtimeStatus")
    await client.command("slipstream.server.listEndpoints", {"uri": pipeline})
    assert client.error is None
    assert client._server is not None and client._server.returncode is None, (
        "the daemon is still running"
    )
    libraries = _mapped_libraries(client._server.pid)
    assert any("python" in lib for lib in libraries), "the maps of the right process were read"
    heavy = sorted(pkg for pkg, lib in HEAVY_LIBRARIES.items() if any(lib in m for m in libraries))
    assert not heavy, f"the daemon imported {heavy}"
