"""Code-lens latency of the daemon on a 5,000-line file, after an edit.

Starts the real daemon (`python -m slipstream_daemon`) over stdio, opens a generated
5,000-line module with a handful of endpoints, then repeatedly sends an incremental edit
(didChange, as VS Code does) followed by textDocument/codeLens, timing the round trip of the
lens request. Two kinds of edit: in ordinary code between endpoints, and inside an endpoint's
body (that endpoint's definition is parsed again).

Baseline, measured in the same run: a full libcst parse of the same file with position
metadata, what a naive server would do on every edit.

    .venv/bin/python bench/bench_lens_latency.py [--lines 5000] [--endpoints 6] [--rounds 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def baseline(source: str, runs: int) -> list[float]:
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        module = cst.parse_module(source)
        MetadataWrapper(module).resolve(PositionProvider)
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(source: str, edit_lines: list[int], rounds: int, path: Path) -> list[float]:
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
    times: list[float] = []
    version = 1
    for n in range(rounds):
        line = edit_lines[(n // 2) % len(edit_lines)]  # insert a character, then delete it
        version += 1
        inserting = n % 2 == 0
        text = rows[line]
        at = types.Position(line=line, character=len(text) - len(text.lstrip()))
        change = types.TextDocumentContentChangePartial(
            range=types.Range(
                start=at,
                end=at if inserting else types.Position(line=line, character=at.character + 1),
            ),
            text="_" if inserting else "",
        )
        started = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[change],
            )
        )
        lenses = await client.text_document_code_lens_async(params)
        times.append((time.perf_counter() - started) * 1000)
        assert len(lenses) == len(first)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--baseline-runs", type=int, default=3)
    args = parser.parse_args()

    source, outside, inside = generate(args.lines, args.endpoints)
    folder = Path(tempfile.mkdtemp(prefix="slipstream-bench-"))
    path = folder / "big_module.py"
    path.write_text(source)
    print(
        f"file: {source.count(chr(10))} lines, {args.endpoints} endpoints "
        f"({len(source) / 1024:.0f} KiB); {args.rounds} edits each"
    )

    full = baseline(source, args.baseline_runs)
    full_median = statistics.median(full)
    print(
        f"baseline  full libcst parse + positions: median {full_median:8.1f} ms "
        f"(runs: {', '.join(f'{t:.0f}' for t in full)})"
    )
    for label, lines in (("edit between endpoints", outside), ("edit inside an endpoint", inside)):
        times = asyncio.run(measure(source, lines, args.rounds, path))
        p50, p95 = percentile(times, 0.50), percentile(times, 0.95)
        print(
            f"daemon    codeLens after {label:24s} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
            f"max {max(times):6.1f} ms   baseline/p50 = {full_median / p50:6.0f}x  "
            f"(goal: p50 < 20 ms: {'met' if p50 < 20 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
