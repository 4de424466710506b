"""Starting the daemon: the `slipstream daemon` command works over stdio, starts quickly, and
never imports the model stack (torch, diffusers, transformers, numpy)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon
from lsprotocol import types

HEAVY = ("torch", "diffusers", "transformers", "numpy")


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


def test_no_model_stack_imported(project: Path) -> None:
    """Index, diagnose, hover and list swaps the way the server does; then look at sys.modules."""
    script = f"""
import sys
from pathlib import Path
from lsprotocol import types
from slipstream_daemon.server import create_server
from slipstream_daemon.finder import index_document
from slipstream_daemon.facts import is_model_id
from slipstream_daemon.diagnostics import endpoint_findings
from slipstream_daemon.hovers import hover
from slipstream_daemon.lenses import code_lenses
from slipstream_daemon.positions import LineIndex
from slipstream_daemon.swap import model_alternatives
from slipstream_daemon.costs import CostBook
import slipstream.client, slipstream.sync, slipstream.embedded

create_server()
root = Path({str(project)!r})
for name in ("pipeline.py", "problems.py"):
    index = index_document("file:///x", 1, (root / name).read_text(), is_model_id)
    lines = LineIndex(index.lines)
    endpoint_findings(index, [root])
    code_lenses(index, lines, CostBook(), "file:///x")
    for ep in index.endpoints:
        hover(index, lines, types.Position(line=ep.decorator.line, character=1), CostBook())
        model_alternatives(ep)
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
print(",".join(heavy))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"the daemon imported {out.stdout.strip()}"
