"""Editing an endpoint file: lenses, hovers, diagnostics and their quick fixes, model swap.

No runtime is involved: these are what the editor shows while typing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_client import Client
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _lenses_by_line(lenses: list[types.CodeLens]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for lens in lenses:
        assert lens.command is not None
        out.setdefault(lens.range.start.line, []).append(lens.command.title)
    return out


async def _lenses(client: Client, uri: str) -> list[types.CodeLens]:
    return await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def test_lenses_sit_over_each_endpoint(daemon: Client, editing_project: Path) -> None:
    uri = daemon.open(editing_project / "pipeline.py")
    lenses = await _lenses(daemon, uri)
    by_line = _lenses_by_line(lenses)
    # line 11: @endpoint over write_prompt (after a line with an astral character)
    assert by_line[11] == ["▶ Run on H100", "⚙ Debug", "$0.00116/s", "⇄ Swap model"]
    # line 16: @ss.endpoint over the class: price and swap; Run sits over its public method
    assert by_line[16] == ["$0.00076/s", "⇄ Swap model"]
    assert by_line[21] == ["▶ Run paint on A100-80GB", "⚙ Debug"]
    # a bare @endpoint: CPU, no price, no model
    assert by_line[28] == ["▶ Run (CPU)", "⚙ Debug"]
    assert 18 not in by_line and 24 not in by_line  # setup and _helper are not callable

    run = next(lens for lens in lenses if lens.range.start.line == 11)
    assert run.command is not None
    assert run.command.command == "slipstream.server.run"
    assert list(run.command.arguments or []) == [{"uri": uri, "endpoint": "write_prompt"}]
    paint = next(lens for lens in lenses if lens.range.start.line == 21)
    assert paint.command is not None
    assert list(paint.command.arguments or []) == [
        {"uri": uri, "endpoint": "Painter", "method": "paint"}
    ]
    assert paint.range.start.character == 8  # the method's name, in UTF-16 units


async def test_lenses_follow_an_edit(daemon: Client, editing_project: Path) -> None:
    path = editing_project / "pipeline.py"
    uri = path.as_uri()
    text = path.read_text()
    daemon.replace(uri, "# one more line\n" + text.replace('gpu="H100"', 'gpu="L4:2"'))
    by_line = _lenses_by_line(await _lenses(daemon, uri))
    assert by_line[12] == ["▶ Run on 2× L4", "⚙ Debug", "$0.00038/s", "⇄ Swap model"]
    daemon.replace(uri, text)
    assert _lenses_by_line(await _lenses(daemon, uri))[11][0] == "▶ Run on H100"


async def test_hover_on_gpu_shows_memory_prices_and_cheaper_fits(
    daemon: Client, editing_project: Path
) -> None:
    uri = (editing_project / "pipeline.py").as_uri()
    line = (editing_project / "pipeline.py").read_text().splitlines()[11]
    hover = await daemon.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=11, character=line.index('"H100"') + 2),
        )
    )
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    text = hover.contents.value
    assert "H100" in text and "80 GB VRAM" in text
    assert "| RunPod flex | $0.00116 | $4.18 |" in text
    assert "| RunPod active | $0.00093 | $3.35 |" in text
    assert "| Modal | $0.001097 | $3.95 |" in text
    assert "Model `Qwen/Qwen3-0.6B`" in text
    assert "Cheaper GPUs that fit ~1.9 GB: A4000/A4500/RTX-4000-ADA (16 GB, $0.00016/s)" in text
    # the hover's range is the gpu value, in UTF-16 columns
    assert hover.range is not None
    assert hover.range.start == types.Position(line=11, character=line.index('"H100"'))


async def test_hover_on_decorator_of_cpu_endpoint(daemon: Client, editing_project: Path) -> None:
    uri = (editing_project / "pipeline.py").as_uri()
    hover = await daemon.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=28, character=3),
        )
    )
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    assert "Runs on the CPU" in hover.contents.value
    nothing = await daemon.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=30, character=5),
        )
    )
    assert nothing is None


async def _problems(daemon: Client, editing_project: Path) -> tuple[str, list[types.Diagnostic]]:
    uri = (editing_project / "problems.py").as_uri()
    if uri not in daemon.versions:
        daemon.open(editing_project / "problems.py")
    return uri, await daemon.diagnostics_for(uri, version=1)


def _by_code(diagnostics: list[types.Diagnostic]) -> dict[str, list[types.Diagnostic]]:
    out: dict[str, list[types.Diagnostic]] = {}
    for d in diagnostics:
        out.setdefault(str(d.code), []).append(d)
    return out


async def _fixes(daemon: Client, uri: str, d: types.Diagnostic) -> list[types.CodeAction]:
    actions = await daemon.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=d.range,
            context=types.CodeActionContext(diagnostics=[d]),
        )
    )
    return [
        a
        for a in actions or []
        if isinstance(a, types.CodeAction) and a.kind == types.CodeActionKind.QuickFix
    ]


def _edits(action: types.CodeAction, uri: str) -> list[types.TextEdit]:
    assert action.edit is not None and action.edit.changes is not None
    return list(action.edit.changes[uri])


async def test_unknown_gpu_is_flagged_at_the_value_with_a_fix(
    daemon: Client, editing_project: Path
) -> None:
    uri, diagnostics = await _problems(daemon, editing_project)
    [unknown] = _by_code(diagnostics)["unknown-gpu"]
    line = (editing_project / "problems.py").read_text().splitlines()[3]
    start = line.index('"H1000"')
    # an astral character earlier on the line: UTF-16 puts the value one unit further right
    assert unknown.range.start == types.Position(line=3, character=start + 1)
    assert unknown.range.end == types.Position(line=3, character=start + 1 + len('"H1000"'))
    assert unknown.severity == types.DiagnosticSeverity.Error
    assert "unknown GPU 'H1000'" in unknown.message
    fixes = await _fixes(daemon, uri, unknown)
    assert fixes[0].title == "Change to 'H100'" and fixes[0].is_preferred
    [edit] = _edits(fixes[0], uri)
    assert edit.new_text == '"H100"' and edit.range == unknown.range


async def test_workers_and_timeout_problems(daemon: Client, editing_project: Path) -> None:
    uri, diagnostics = await _problems(daemon, editing_project)
    codes = _by_code(diagnostics)
    [workers] = codes["workers-min-gt-max"]
    assert workers.range.start.line == 8
    assert "min (3) is greater than max (1)" in workers.message
    [timeout] = codes["bad-timeout"]
    line = (editing_project / "problems.py").read_text().splitlines()[8]
    assert timeout.range.start == types.Position(line=8, character=line.index("-5"))
    [swap] = await _fixes(daemon, uri, workers)
    assert swap.title == "Swap min and max"
    assert sorted(e.new_text for e in _edits(swap, uri)) == ["1", "3"]


async def test_model_too_large_for_the_gpu(daemon: Client, editing_project: Path) -> None:
    uri, diagnostics = await _problems(daemon, editing_project)
    [big] = _by_code(diagnostics)["model-too-large"]
    line = (editing_project / "problems.py").read_text().splitlines()[14]
    assert big.range.start == types.Position(line=14, character=line.index('"Qwen/Qwen3-32B"'))
    assert "Qwen/Qwen3-32B needs ~79.7 GB" in big.message and "L4 has 24 GB" in big.message
    [fix] = await _fixes(daemon, uri, big)
    assert fix.title == "Use gpu='A100-80GB' (80 GB)"
    [edit] = _edits(fix, uri)
    assert edit.new_text == '"A100-80GB"' and edit.range.start.line == 13


async def test_undeclared_dependency_only_for_third_party(
    daemon: Client, editing_project: Path
) -> None:
    uri, diagnostics = await _problems(daemon, editing_project)
    flagged = _by_code(diagnostics)["undeclared-dependency"]
    # os is stdlib, helpers is a project module, torch is declared ("torch>=2.1")
    assert [d.range.start.line for d in flagged] == [22, 25]
    assert "'diffusers' is imported" in flagged[0].message
    assert "'PIL' is imported" in flagged[1].message and "'pillow'" in flagged[1].message
    assert all(d.severity == types.DiagnosticSeverity.Warning for d in flagged)
    [fix] = await _fixes(daemon, uri, flagged[0])
    assert fix.title == "Add 'diffusers' to dependencies"
    [edit] = _edits(fix, uri)
    line = (editing_project / "problems.py").read_text().splitlines()[18]
    at = line.index('"torch>=2.1"') + len('"torch>=2.1"')
    assert edit.range.start == types.Position(line=18, character=at)
    assert edit.new_text == ', "diffusers"'


async def test_fixed_code_clears_its_diagnostics(daemon: Client, editing_project: Path) -> None:
    uri, _ = await _problems(daemon, editing_project)
    text = (editing_project / "problems.py").read_text()
    fixed = (
        text.replace('"H1000"', '"H100"')
        .replace("(3, 1)", "(1, 3)")
        .replace("timeout=-5", "timeout=5")
        .replace('gpu="L4"', 'gpu="A100-80GB"')
        .replace('["torch>=2.1"]', '["torch>=2.1", "diffusers", "pillow"]')
    )
    version = daemon.replace(uri, fixed)
    assert await daemon.diagnostics_for(uri, version=version) == []
    version = daemon.replace(uri, text)
    assert len(await daemon.diagnostics_for(uri, version=version)) == 6


BROKEN = """from slipstream import endpoint


@endpoint(gpu="H100")
def fine() -> str:
    return "ok"


@endpoint(gpu="H1
def broken():
    pass


@endpoint(gpu=
"""


async def test_broken_file_gives_diagnostics_not_a_crash(
    daemon: Client, editing_project: Path
) -> None:
    path = editing_project / "scratch.py"
    uri = daemon.open(path, BROKEN)
    diagnostics = await daemon.diagnostics_for(uri, version=1)
    syntax = [d for d in diagnostics if d.code == "syntax-error"]
    assert [d.range.start.line for d in syntax] == [8, 13]
    assert "unterminated string" in syntax[0].message
    # the good endpoint keeps its lenses; the server still answers
    by_line = _lenses_by_line(await _lenses(daemon, uri))
    assert by_line == {3: ["▶ Run on H100", "⚙ Debug", "$0.00116/s"]}
    # typing the decorator through: each intermediate state is handled
    text = BROKEN.replace('@endpoint(gpu="H1\n', '@endpoint(gpu="H100")\n')
    for cut in ("@endpoint(", "@endpoint(gpu=", '@endpoint(gpu="A1', '@endpoint(gpu="A100")'):
        version = daemon.replace(uri, text.replace("@endpoint(gpu=\n", cut + "\n"))
        await daemon.diagnostics_for(uri, version=version)
    version = daemon.replace(
        uri, text.replace("@endpoint(gpu=\n", '@endpoint(gpu="A100")\ndef done(): ...\n')
    )
    assert await daemon.diagnostics_for(uri, version=version) == []
    assert len(_lenses_by_line(await _lenses(daemon, uri))) == 3


async def test_apply_model_rewrites_the_constant(daemon: Client, editing_project: Path) -> None:
    uri = (editing_project / "pipeline.py").as_uri()
    alternatives = await daemon.command(
        "slipstream.server.modelAlternatives", {"uri": uri, "endpoint": "write_prompt"}
    )
    assert alternatives["current"] == "Qwen/Qwen3-0.6B" and alternatives["kind"] == "llm"
    by_id = {item["id"]: item for item in alternatives["items"]}
    assert by_id["Qwen/Qwen3-0.6B"]["label"] == "Qwen/Qwen3-0.6B (current)"
    assert by_id["Qwen/Qwen3-8B"]["fits"] is True
    assert by_id["Qwen/Qwen3-8B"]["pricePerSecond"] == 0.00116
    assert by_id["Qwen/Qwen3-32B"]["vramGb"] == pytest.approx(79.7, abs=0.1)

    before = len(daemon.applied_edits)
    reply = await daemon.command(
        "slipstream.server.applyModel",
        {"uri": uri, "endpoint": "write_prompt", "modelId": "Qwen/Qwen3-4B"},
    )
    assert reply == {"applied": True}
    [params] = daemon.applied_edits[before:]
    assert params.edit.changes is not None
    [edit] = params.edit.changes[uri]
    assert edit.range == types.Range(
        start=types.Position(line=7, character=0), end=types.Position(line=8, character=0)
    )
    assert edit.new_text == 'LLM = "Qwen/Qwen3-4B"\n'


async def test_swap_model_asks_then_rewrites_the_literal(
    daemon: Client, editing_project: Path
) -> None:
    uri = (editing_project / "pipeline.py").as_uri()
    before = len(daemon.applied_edits)
    reply = await daemon.command("slipstream.server.swapModel", {"uri": uri, "endpoint": "Painter"})
    assert reply == {"applied": True}
    asked = daemon.message_requests[-1]
    assert asked.message == "Swap Lykon/dreamshaper-8 for:"
    assert asked.actions is not None
    first = asked.actions[0].title  # the client picked the first choice
    new_id = first.split(" ")[0]
    [params] = daemon.applied_edits[before:]
    assert params.edit.changes is not None
    [edit] = params.edit.changes[uri]
    assert edit.range.start.line == 19
    assert edit.new_text == f'        self.pipe = keep("{new_id}", lambda: None)\n'


async def test_code_actions_offer_run_and_swap(daemon: Client, editing_project: Path) -> None:
    uri = (editing_project / "pipeline.py").as_uri()
    actions = await daemon.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(
                start=types.Position(line=13, character=4), end=types.Position(line=13, character=4)
            ),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    titles = [a.title for a in actions or []]
    assert titles == ["▶ Run on H100: write_prompt", "⇄ Swap model: Qwen/Qwen3-0.6B"]


async def test_list_endpoints(daemon: Client, editing_project: Path) -> None:
    uri = (editing_project / "pipeline.py").as_uri()
    reply = await daemon.command("slipstream.server.listEndpoints", {"uri": uri})
    assert reply["endpoints"] == [
        {"uri": uri, "name": "write_prompt", "gpu": "H100", "line": 11, "methods": []},
        {"uri": uri, "name": "Painter", "gpu": "A100-80GB", "line": 16, "methods": ["paint"]},
        {"uri": uri, "name": "on_cpu", "gpu": "CPU", "line": 28, "methods": []},
    ]


async def test_runtime_status_before_any_runtime(daemon: Client) -> None:
    status = await daemon.command("slipstream.server.runtimeStatus")
    assert status == {
        "url": None,
        "kind": "embedded",
        "connected": False,
        "gpus": [],
        "spendUsd": 0.0,
        "endpoints": 0,
    }


async def test_a_project_models_toml_sets_the_swap_list(
    daemon: Client, editing_project: Path
) -> None:
    uri = (editing_project / "pipeline.py").as_uri()
    listing = editing_project / "models.toml"
    listing.write_text(
        "[endpoints.write_prompt]\n"
        '[[endpoints.write_prompt.models]]\nid = "Qwen/Qwen3-1.7B"\ndescription = "small and quick"\n'
        '[[endpoints.write_prompt.models]]\nid = "Qwen/Qwen3-0.6B"\ndescription = "the default"\n'
    )
    try:
        alternatives = await daemon.command(
            "slipstream.server.modelAlternatives", {"uri": uri, "endpoint": "write_prompt"}
        )
    finally:
        listing.unlink()
    assert [i["id"] for i in alternatives["items"]] == ["Qwen/Qwen3-1.7B", "Qwen/Qwen3-0.6B"]
    assert alternatives["items"][0]["description"].startswith("small and quick")


POSITIONAL = """from slipstream import endpoint


@endpoint("shout")
def loud(text: str) -> str:
    return text.upper()


@endpoint("paint", "H100")
def paint() -> str:
    return "ok"
"""


async def test_positional_arguments_as_the_decorator_binds_them(
    daemon: Client, editing_project: Path
) -> None:
    """A positional name works (it works at import too: tests/runtime/test_decorator_params.py);
    a second positional argument, which the decorator refuses at import, is flagged where it is
    written, saying what to write instead (was: read as gpu=, a lens, and a TypeError at import)."""
    uri = daemon.open(editing_project / "positional.py", POSITIONAL)
    [flagged] = await daemon.diagnostics_for(uri, version=1)
    assert flagged.code == "positional-argument"
    assert flagged.range.start == types.Position(line=8, character=19)  # at "H100"
    assert "argument 2 needs one" in flagged.message
    assert 'Write it as keyword=value, e.g. gpu="H100"' in flagged.message
    run = [lens for lens in await _lenses(daemon, uri) if lens.range.start.line == 3]
    assert run[0].command is not None
    assert list(run[0].command.arguments or []) == [{"uri": uri, "endpoint": "shout"}]
    version = daemon.replace(uri, POSITIONAL.replace('"paint", "H100"', '"paint", gpu="H100"'))
    assert await daemon.diagnostics_for(uri, version=version) == []
