"""The language server under garbage: mutated real files, truncated decorators, binary noise
and a huge file never crash it or stall it past a bound."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon
from lsprotocol import types

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [*REPO.glob("examples/*/*.py"), *REPO.glob("tests/daemon/projects/*/*.py")],
    key=lambda p: p.name,
)
BOUND_S = 10.0  # no request may take longer than this, whatever the document holds


def _mutants(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    texts = [p.read_text() for p in SOURCES]
    out: list[str] = []
    for _ in range(n):
        text = rng.choice(texts)
        op = rng.randrange(6)
        if op == 0:  # cut anywhere: half-typed code
            text = text[: rng.randrange(len(text) + 1)]
        elif op == 1:  # delete a span
            a = rng.randrange(len(text) + 1)
            text = text[:a] + text[a + rng.randrange(200) :]
        elif op == 2:  # insert decorator fragments and brackets
            frag = rng.choice(
                [
                    "@endpoint(",
                    "@endpoint(gpu=",
                    '"H1',
                    "workers=(3, 1",
                    ")))",
                    "(((",
                    "\\",
                    "@",
                    "\t",
                ]
            )
            a = rng.randrange(len(text) + 1)
            text = text[:a] + frag + text[a:]
        elif op == 3:  # binary noise, decoded the way an editor might show it
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))).decode(
                "latin-1"
            )
            a = rng.randrange(len(text) + 1)
            text = text[:a] + noise + text[a:]
        elif op == 4:  # shuffle lines
            lines = text.splitlines(keepends=True)
            rng.shuffle(lines)
            text = "".join(lines)
        else:  # astral characters and surrogate-heavy text shift UTF-16 columns
            a = rng.randrange(len(text) + 1)
            text = text[:a] + "𝕊🚀" * rng.randrange(1, 20) + text[a:]
        out.append(text)
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_daemon(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Client, Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "slipstream.toml").write_text('[project]\nname = "fuzz"\n')
    client = await start_daemon(root)
    yield client, root
    await client.shutdown_session()
    await client.stop()


async def _bounded(coro):
    return await asyncio.wait_for(coro, BOUND_S)


async def test_mutated_documents_never_crash_or_stall_the_server(fuzz_daemon) -> None:
    client, root = fuzz_daemon
    path = root / "fuzzed.py"
    uri = client.open(path, "")
    rng = random.Random(7)
    published = 0
    for text in _mutants(seed=1, n=120):
        version = client.replace(uri, text)
        doc = types.TextDocumentIdentifier(uri=uri)
        lines = text.split("\n")
        line = rng.randrange(len(lines))
        pos = types.Position(line=line, character=rng.randrange(len(lines[line]) + 3))
        await _bounded(
            client.text_document_code_lens_async(types.CodeLensParams(text_document=doc))
        )
        await _bounded(
            client.text_document_hover_async(types.HoverParams(text_document=doc, position=pos))
        )
        await _bounded(
            client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=doc,
                    range=types.Range(start=pos, end=pos),
                    context=types.CodeActionContext(diagnostics=[]),
                )
            )
        )
        # the diagnostics of this very version arrive (a failure while computing them would only
        # be logged by the server, and a later edit would cancel a slow one: wait for each)
        diagnostics = await client.diagnostics_for(uri, version=version, timeout=BOUND_S)
        for d in diagnostics:
            assert 0 <= d.range.start.line <= d.range.end.line <= len(lines), (version, d)
        published += bool(diagnostics)
    print(f"{published} of 120 mutated documents got diagnostics")
    assert published >= 10, "mutated code is diagnosed, not only answered with nothing"
    # still itself afterwards: a clean document gets its lens
    version = client.replace(
        uri, 'from slipstream import endpoint\n\n@endpoint(gpu="H100")\ndef ok():\n    return 1\n'
    )
    lenses = await _bounded(
        client.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
    )
    assert any(lens.command and lens.command.title == "▶ Run on H100" for lens in lenses)
    assert await client.diagnostics_for(uri, version=version) == []


async def test_a_huge_file_answers_within_the_bound(fuzz_daemon) -> None:
    client, root = fuzz_daemon
    body = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n" for i in range(15_000))
    text = (
        "from slipstream import endpoint\n\n"
        + body
        + '@endpoint(gpu="L4")\ndef last():\n    return 0\n'
    )
    uri = client.open(root / "huge.py", text)
    lenses = await _bounded(
        client.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
    )
    assert any(lens.command and lens.command.title == "▶ Run on L4" for lens in lenses)
