"""Code-lens latency of the daemon on a 5,000-line file, after an edit.

Starts the real daemon (`python -m slipstream_daemon`) over stdio, opens a generated
5,000-line module with a handful of endpoints, then repeatedly sends an incremental edit
(didChange, as VS Code does) followed by textDocument/codeLens, timing the round trip of the
lens request. Two kinds of edit, interleaved edit by edit: in ordinary code between
endpoints, and inside an endpoint's body (that endpoint's definition is parsed again). Every
edit writes a statement with a new counter value, so the document never returns to a state
the daemon has seen (inserting and deleting the same character would let a snippet cache
answer most samples).

Baseline, interleaved in the same run: a full libcst parse of the same file with position
metadata, what a naive server would do on every edit.

    .venv/bin/python bench/bench_lens_latency.py [--lines 5000] [--endpoints 6] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from _common import fmt, goal, machine, stats_ms
from lsprotocol import types
from pygls.lsp.client import LanguageClient

HELPER = '''

def helper_{i}(x: int, y: int = 2) -> int:
    """Sum a few things ({i})."""
    total = 0
    for k in range(x):
        if k % 3 == 0:
            total += k * y
        else:
            total -= math.floor(k / (y + 1))
    return total


class Thing{i}:
    def __init__(self, value: int) -> None:
        self.value = value

    def doubled(self) -> int:
        return self.value * 2 + helper_{i}(self.value)
'''

FUNCTION_ENDPOINT = '''

@endpoint(gpu="H100", workers=(0, 3), example={{"prompt": "a cat"}})
def generate_{i}(prompt: str, model: str = MODEL_{i}) -> str:
    """Write something with an LLM ({i})."""
    import transformers

    tokens = prompt.split()
    return " ".join(reversed(tokens)) + str(len(transformers.__name__))
'''

CLASS_ENDPOINT = """

@ss.endpoint(gpu="A100-80GB", dependencies=["diffusers"], example={{"paint": {{"prompt": "x"}}}})
class Painter{i}:
    def setup(self) -> None:
        self.pipe = keep("Lykon/dreamshaper-8", lambda: None)

    def paint(self, prompt: str) -> str:
        return prompt * 2
"""


def generate(lines: int, endpoints: int) -> tuple[str, list[int], list[int]]:
    """(source, lines to edit outside endpoints, lines to edit inside endpoint bodies)."""
    head = (
        '"""A generated module for the lens-latency benchmark."""\n\n'
        "from __future__ import annotations\n\n"
        "import math\n\n"
        "import slipstream as ss\n"
        "from slipstream import endpoint, keep\n\n"
    )
    head += "".join(f'MODEL_{i} = "Qwen/Qwen3-0.6B"\n' for i in range(endpoints))
    parts = [head]
    helper_lines = HELPER.count("\n")
    helpers_total = max(1, (lines - head.count("\n")) // helper_lines)
    every = max(1, helpers_total // (endpoints + 1))
    placed = 0
    for i in range(helpers_total):
        parts.append(HELPER.format(i=i))
        if (i + 1) % every == 0 and placed < endpoints:
            template = CLASS_ENDPOINT if placed % 3 == 2 else FUNCTION_ENDPOINT
            parts.append(template.format(i=placed))
            placed += 1
    source = "".join(parts)
    rows = source.splitlines()
    outside = [n for n, text in enumerate(rows) if text.strip() == "total = 0"]
    inside = [n for n, text in enumerate(rows) if text.strip() == "tokens = prompt.split()"]
    inside += [n for n, text in enumerate(rows) if text.strip().startswith("self.pipe = keep(")]
    return source, outside, inside


def full_parse_ms(source: str) -> float:
    """The baseline: a full libcst parse with positions, what a naive server does per edit."""
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    started = time.perf_counter()
    module = cst.parse_module(source)
    MetadataWrapper(module).resolve(PositionProvider)
    return (time.perf_counter() - started) * 1000


async def measure(
    source: str, kinds: dict[str, list[int]], rounds: int, path: Path, baseline_every: int
) -> tuple[dict[str, list[float]], list[float], int]:
    """Lens round trips after fresh edits of each kind, interleaved edit by edit, and the
    baseline parse interleaved with them (one every `baseline_every` rounds)."""
    client = LanguageClient("bench", "0")
    await client.start_io(sys.executable, "-m", "slipstream_daemon", "--log-level", "WARNING")
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=path.parent.as_uri()
        )
    )
    client.initialized(types.InitializedParams())
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=source
            )
        )
    )
    params = types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    first = await client.text_document_code_lens_async(params)  # cold: parses every endpoint
    assert first, "no lenses on the generated file"
    rows = source.splitlines()
    times: dict[str, list[float]] = {k: [] for k in kinds}
    baseline: list[float] = []
    inserted: dict[int, int] = {}  # line -> length of the statement this benchmark put there
    version = 1
    for n in range(rounds):
        order = list(kinds) if n % 2 == 0 else list(kinds)[::-1]
        for label in order:
            lines = kinds[label]
            line = lines[n % len(lines)]
            version += 1
            # Every edit leaves text never seen before (a new counter value), so no cache of a
            # previous state can answer it: each edited endpoint is parsed afresh.
            statement = f"v{version:07d} = 0; "
            indent = len(rows[line]) - len(rows[line].lstrip())
            change = types.TextDocumentContentChangePartial(
                range=types.Range(
                    start=types.Position(line=line, character=indent),
                    end=types.Position(line=line, character=indent + inserted.get(line, 0)),
                ),
                text=statement,
            )
            inserted[line] = len(statement)
            started = time.perf_counter()
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[change],
                )
            )
            lenses = await client.text_document_code_lens_async(params)
            times[label].append((time.perf_counter() - started) * 1000)
            assert len(lenses) == len(first)
        if n % baseline_every == 0:
            baseline.append(full_parse_ms(source))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times, baseline, version - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=200, help="edits of each kind")
    parser.add_argument(
        "--baseline-every", type=int, default=20, help="one baseline parse every N rounds"
    )
    args = parser.parse_args()

    print(machine())
    source, outside, inside = generate(args.lines, args.endpoints)
    folder = Path(tempfile.mkdtemp(prefix="slipstream-bench-"))
    path = folder / "big_module.py"
    path.write_text(source)
    print(
        f"file: {source.count(chr(10))} lines, {args.endpoints} endpoints "
        f"({len(source) / 1024:.0f} KiB); {args.rounds} fresh edits of each kind, interleaved"
    )
    kinds = {"edit between endpoints": outside, "edit inside an endpoint": inside}
    times, full, edits = asyncio.run(measure(source, kinds, args.rounds, path, args.baseline_every))
    base = stats_ms([t / 1000 for t in full])
    print(fmt("baseline: full libcst parse + positions", base))
    for label, samples in times.items():
        st = stats_ms([t / 1000 for t in samples])
        print(
            fmt(f"codeLens after {label}", st) + f"   baseline/p50 = {base['p50'] / st['p50']:.0f}x"
        )
        print(goal(f"codeLens p50 < 20 ms after an {label}", st["p50"] < 20))
    print(f"({edits} edits, each leaving text never seen before)")


if __name__ == "__main__":
    main()
