"""Never silently stale, in the editor: a kept object that a reload cannot bring to the saved
code (its class's __init__ changed) is a warning at its endpoint, in the deployResult and on
the run card, and "Rebuild kept model" (slipstream.server.rebuildKept) applies the new code.

A real daemon against a real runtime (`slipstream serve` on loopback), as test_daemon_runtime.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from daemon_client import Client, start_daemon
from lsprotocol import types

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

DEPLOY = "slipstream/deployResult"
RESULT = "slipstream/runResult"

MODEL = """\
class Greeter:
    def __init__(self):
        self.greeting = "hello"

    def greet(self, name):
        return f"{self.greeting} {name}"
"""

APP = """\
from slipstream import endpoint, keep

import model


@endpoint
class Chat:
    def setup(self):
        self.model = keep("gpt", model.Greeter)

    def reply(self, name: str = "ada"):
        return self.model.greet(name)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = (tmp_path_factory.mktemp("kept") / "keptapp").resolve()
    root.mkdir()
    (root / "slipstream.toml").write_text('[project]\nname = "keptapp"\n')
    (root / "model.py").write_text(MODEL)
    (root / "app.py").write_text(APP)
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(project: Path, runtime: Any) -> AsyncIterator[Client]:
    client = await start_daemon(
        project, {"SLIPSTREAM_RUNTIME_URL": runtime.url, "SLIPSTREAM_TOKEN": runtime.token}
    )
    client.open(project / "app.py")
    client.open(project / "model.py")
    yield client
    await client.shutdown_session()
    await client.stop()


async def _save(client: Client, path: Path, text: str | None = None) -> dict[str, Any]:
    uri = path.as_uri()
    if text is not None:
        path.write_text(text)
        client.replace(uri, text)
    waiting = asyncio.ensure_future(client.next_note(DEPLOY, timeout=120))
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    return await waiting


async def _reply(client: Client, project: Path) -> dict[str, Any]:
    seen = len(client.notes_of(RESULT))
    started = await client.command(
        "slipstream.server.run",
        {
            "uri": (project / "app.py").as_uri(),
            "endpoint": "Chat",
            "method": "reply",
            "kwargs": {"name": "ada"},
        },
    )
    result = await client.next_note(RESULT, timeout=120, since=seen, runId=started["runId"])
    assert result["status"] == "ok", result
    return result


def _command(action: types.CodeAction | types.Command) -> types.Command:
    """A code action's command. lsprotocol's client side reads every action that has a command
    as a Command (its `command` then holds the action's command object, as a str)."""
    if isinstance(action, types.CodeAction):
        assert action.command is not None
        return action.command
    raw = ast.literal_eval(action.command)
    return types.Command(title=raw["title"], command=raw["command"], arguments=raw.get("arguments"))


async def _kept_warnings(
    client: Client, uri: str, present: bool, timeout: float = 30
) -> list[types.Diagnostic]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [d for d in client.diagnostics.get(uri, []) if d.code == "kept-stale"]
        if bool(found) == present:
            return found
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"kept-stale diagnostics of {uri}: {found} (wanted present={present})")
        await asyncio.sleep(0.05)


async def test_a_changed_init_is_named_everywhere_and_rebuild_applies_it(
    client: Client, project: Path
) -> None:
    app, model = project / "app.py", project / "model.py"
    deployed = await _save(client, app)
    assert deployed["ok"] is True, deployed
    first = await _reply(client, project)
    assert first["text"] == "hello ada"
    assert "warnings" not in first

    # a method of the kept object's class: it follows, nothing is stale
    followed = await _save(
        client, model, MODEL.replace('f"{self.greeting} {name}"', 'f"{self.greeting}, {name}"')
    )
    assert followed["ok"] is True, followed
    assert followed["kept"]["updated"] >= 1 and followed["kept"]["stale"] == [], followed
    assert (await _reply(client, project))["text"] == "hello, ada"

    # its __init__: the kept object was built by the old one and keeps running the old code
    new_init = (
        MODEL.replace('f"{self.greeting} {name}"', 'f"{self.greeting}, {name}"')
        .replace('"hello"', '"hi"\n        self.mark = "!"')
        .replace('{name}"', '{name}{self.mark}"')
    )
    stale_deploy = await _save(client, model, new_init)
    assert stale_deploy["ok"] is True, stale_deploy
    [stale] = stale_deploy["kept"]["stale"]
    assert stale["endpoint"] == "Chat" and stale["key"] == "'gpt'"
    assert stale["cls"] == "model.Greeter"
    assert "Greeter.__init__ changed" in stale["why"]

    app_uri = app.as_uri()
    decorator = APP.splitlines().index("@endpoint")
    [warning] = await _kept_warnings(client, app_uri, present=True)
    assert warning.severity == types.DiagnosticSeverity.Warning
    assert warning.range.start.line == decorator
    assert warning.message == (
        "kept 'gpt' (model.Greeter) still runs its old code: Greeter.__init__ changed: the kept "
        "object was built by the old one. Rebuild it to apply."
    )
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=app_uri),
            range=warning.range,
            context=types.CodeActionContext(diagnostics=[warning]),
        )
    )
    [rebuild] = [_command(a) for a in actions or [] if a.title == "Rebuild kept model: Chat"]
    assert rebuild.command == "slipstream.server.rebuildKept"
    assert list(rebuild.arguments or []) == [{"uri": app_uri, "endpoint": "Chat"}]

    # the run card says so, and the call still runs the old code consistently
    old = await _reply(client, project)
    assert old["text"] == "hello, ada"
    [card_warning] = old["warnings"]
    assert card_warning["kind"] == "kept-stale" and card_warning["endpoint"] == "Chat"
    assert card_warning["keys"] == ["'gpt'"]
    assert "kept 'gpt' (model.Greeter) still runs its old code" in card_warning["message"]

    # Rebuild kept model: loaded again by the new __init__, the warning goes
    rebuilt = await client.command(rebuild.command, rebuild.arguments[0])
    assert rebuilt["ok"] is True, rebuilt
    [chat] = rebuilt["endpoints"]
    assert chat["endpoint"] == "Chat" and chat["released"] == ["'gpt'"] and chat["stale"] == []
    assert chat["workers"] >= 1
    assert "worker(s) loaded 'gpt' again and re-ran setup()" in rebuilt["message"]
    await _kept_warnings(client, app_uri, present=False)
    new = await _reply(client, project)
    assert new["text"] == "hi, ada!"
    assert "warnings" not in new
