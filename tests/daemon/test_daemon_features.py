"""The daemon's deploy and run features on their own, without a language server: each gets
what it uses (the runtime, the documents, a notify function...) and its notifications are
collected from a plain list. The runtime is a real `slipstream serve` on loopback, the
documents a real pygls workspace over the project's files."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.workspace import Workspace

from slipstream_daemon.costs import CostBook
from slipstream_daemon.deploy import Deployer
from slipstream_daemon.diagnostics import ReportedProblems
from slipstream_daemon.documents import Documents
from slipstream_daemon.paths import path_to_uri
from slipstream_daemon.protocol import (
    NOTIFY_DEPLOY_RESULT,
    NOTIFY_RUN_LOG,
    NOTIFY_RUN_RESULT,
    NOTIFY_RUN_STARTED,
)
from slipstream_daemon.routed import EditorRouting, known_endpoints
from slipstream_daemon.runs import Runner
from slipstream_daemon.runtime import RuntimeManager
from tests.conftest import RunningRuntime, start_runtime

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = """
from slipstream import endpoint


@endpoint(example={"name": "ada"})
def hello(name: str) -> str:
    print(f"greeting {name}")
    return f"hello {name}"


@endpoint()
def fails() -> None:
    raise ValueError("no luck")
"""


class Editor:
    """What the features say to the editor, kept in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.logged: list[types.LogMessageParams] = []
        self.republished: list[set[Path]] = []
        self.runs_ended = 0

    def notify(self, method: str, params: Any) -> None:
        self.sent.append((method, params))

    def of(self, method: str) -> list[Any]:
        return [p for m, p in self.sent if m == method]

    async def republish(self, paths: set[Path]) -> None:
        self.republished.append(set(paths))

    async def ran(self) -> None:
        self.runs_ended += 1


@pytest.fixture(scope="module")
def served() -> Iterator[RunningRuntime]:
    rt = start_runtime()
    yield rt
    rt.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def features(served: RunningRuntime, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "slipstream.toml").write_text('[project]\nname = "features"\n')
    (root / "app.py").write_text(textwrap.dedent(APP))
    editor = Editor()
    reported = ReportedProblems()
    costs = CostBook()
    runtime = RuntimeManager(lambda status: None, lambda: costs.session_usd)
    workspace = Workspace(path_to_uri(root))
    documents = Documents(lambda: workspace)
    routing = EditorRouting()
    deployer = Deployer(
        runtime,
        reported,
        editor.republish,
        routing=routing,
        endpoints=lambda r: known_endpoints(documents, r),
        notify=editor.notify,
        log_message=editor.logged.append,
        progress=lambda: None,
    )
    runner = Runner(
        documents,
        runtime,
        deployer,
        routing=routing,
        reported=reported,
        republish=editor.republish,
        costs=costs,
        notify=editor.notify,
        project_root=lambda path: root,
        where_for=lambda uri: None,
        ran=editor.ran,
    )
    await runtime.select(served.url, served.token, embedded=False)
    yield {
        "root": root,
        "editor": editor,
        "reported": reported,
        "costs": costs,
        "deployer": deployer,
        "runner": runner,
    }
    await runner.close()
    await deployer.close()
    await runtime.close()
    routing.close()


async def test_a_refused_deploy_is_a_problem_at_its_line_until_fixed(
    features: dict[str, Any],
) -> None:
    root, editor, reported = features["root"], features["editor"], features["reported"]
    deployer: Deployer = features["deployer"]
    app = (root / "app.py").resolve()
    good = app.read_text()
    app.write_text(good + "\nraise RuntimeError('broken at import')\n")
    bad_line = len(good.splitlines()) + 2

    result = await deployer.deploy(root)
    assert not result["ok"] and result["error"]["line"] == bad_line, result
    assert editor.of(NOTIFY_DEPLOY_RESULT) == [result], "the client is told, once"
    assert editor.logged and editor.logged[-1].type == types.MessageType.Warning
    problems = reported.for_path(app)
    assert [(p.line, p.code) for p in problems] == [(bad_line, "deploy-error")]
    assert "broken at import" in problems[0].message
    assert app in editor.republished[-1], "the file's diagnostics are published again"

    app.write_text(good)
    result = await deployer.deploy(root)
    assert result["ok"] and "app.py" in " ".join(result["changed"]), result
    assert editor.of(NOTIFY_DEPLOY_RESULT)[-1] == result
    assert reported.for_path(app) == [], "the next good deploy clears the problem"
    assert app in editor.republished[-1]


async def test_a_run_reports_start_live_logs_and_result_and_records_its_cost(
    features: dict[str, Any],
) -> None:
    root, editor, costs = features["root"], features["editor"], features["costs"]
    runner: Runner = features["runner"]
    uri = path_to_uri(root / "app.py")

    run_id = await runner.start({"uri": uri, "endpoint": "hello"})
    await _ended(runner)
    assert [m for m, p in editor.sent if p.get("runId") == run_id][0] == NOTIFY_RUN_STARTED
    result = editor.of(NOTIFY_RUN_RESULT)[-1]
    assert result["runId"] == run_id and result["status"] == "ok", result
    assert result["text"] == "hello ada", "the decorator's example is the arguments"
    lines = [p["text"] for p in editor.of(NOTIFY_RUN_LOG) if p["runId"] == run_id]
    assert any("greeting ada" in line for line in lines), lines
    assert editor.sent[-1] == (NOTIFY_RUN_RESULT, result), "the result comes last"
    measured = costs.get("hello")
    assert measured is not None and measured.calls == 1
    assert editor.runs_ended == 1, "lenses and status bar are refreshed after the run"


async def test_a_remote_exception_is_a_problem_at_the_local_line(features: dict[str, Any]) -> None:
    root, editor, reported = features["root"], features["editor"], features["reported"]
    runner: Runner = features["runner"]
    app = (root / "app.py").resolve()

    await runner.start({"uri": path_to_uri(app), "endpoint": "fails"})
    await _ended(runner)
    result = editor.of(NOTIFY_RUN_RESULT)[-1]
    assert result["status"] == "error" and result["error"]["type"].endswith("ValueError")
    raise_line = next(
        i for i, text in enumerate(app.read_text().splitlines(), 1) if "no luck" in text
    )
    problems = reported.for_path(app)
    assert [(p.line, p.code) for p in problems] == [(raise_line, "remote-exception")], problems
    assert features["costs"].get("fails") is None, "a failed run is not a measured cost"


async def _ended(runner: Runner) -> None:
    """Wait for the runs the runner started (they run as tasks; the command answers at once)."""
    import asyncio

    await asyncio.wait_for(asyncio.gather(*list(runner._tasks)), 60)


KEPT_APP = """\
from slipstream import endpoint, keep

import model


@endpoint
class Chat:
    def setup(self):
        self.model = keep("gpt", model.GPT)
"""


async def test_stale_kept_objects_are_warnings_at_their_endpoint_until_a_deploy_clears_them(
    tmp_path: Path,
) -> None:
    """KeptObjects alone: a deploy's reply (SyncResult.kept) -> warnings at the decorator with
    the "Rebuild kept model" quick fix; an unchanged deploy keeps them, a reply without them clears."""
    from types import SimpleNamespace

    from slipstream_daemon.kept import KeptObjects, kept_actions

    root = tmp_path / "kept"
    root.mkdir()
    (root / "app.py").write_text(KEPT_APP)
    editor = Editor()
    reported = ReportedProblems()
    workspace = Workspace(path_to_uri(root))
    documents = Documents(lambda: workspace)
    kept = KeptObjects(
        documents,
        reported,
        editor.republish,
        runtime=RuntimeManager(lambda status: None, lambda: 0.0),
        routing=EditorRouting(),
        project_root=lambda path: root,
        uri_for=path_to_uri,
        progress=lambda: None,
    )
    stale = {
        "key": "'gpt'",
        "path": "(the kept object)",
        "cls": "model.GPT",
        "why": "GPT.__init__ changed: the kept object was built by the old one",
    }
    endpoints = [
        {"name": "Chat", "file": "app.py", "line": 7}
    ]  # the class line: the decorator is 6

    def synced(kept_reply: dict[str, Any], unchanged: bool = False) -> Any:
        return SimpleNamespace(kept=kept_reply, endpoints=endpoints, unchanged=unchanged)

    said = await kept.deployed(
        root, synced({"Chat": {"updated": 2, "classes": [], "stale": [stale], "loading": 0}})
    )
    assert said == {"updated": 2, "stale": [{"endpoint": "Chat", **stale}]}
    [item] = reported.for_path(root / "app.py")
    assert (item.line, item.code, item.severity, item.endpoint) == (
        6,
        "kept-stale",
        "warning",
        "Chat",
    )
    assert item.message == (
        "kept 'gpt' (model.GPT) still runs its old code: GPT.__init__ changed: the kept object "
        "was built by the old one. Rebuild it to apply."
    )
    assert editor.republished[-1] == {root / "app.py"}
    index = await documents.get(path_to_uri(root / "app.py"))
    rng = types.Range(
        start=types.Position(line=5, character=0), end=types.Position(line=5, character=0)
    )
    [action] = kept_actions([item], documents.lines(index), rng, "file:///app.py")
    assert action.title == "Rebuild kept model: Chat" and action.command is not None
    assert action.command.command == "slipstream.server.rebuildKept"
    assert action.command.arguments == [{"uri": "file:///app.py", "endpoint": "Chat"}]
    assert action.diagnostics and action.diagnostics[0].severity == types.DiagnosticSeverity.Warning

    assert await kept.deployed(root, synced({}, unchanged=True)) is None  # nothing reloaded
    assert len(reported.for_path(root / "app.py")) == 1
    assert await kept.deployed(root, synced({})) is None  # reloaded, nothing stale any more
    assert reported.for_path(root / "app.py") == []
    assert kept.stale(root) == []
