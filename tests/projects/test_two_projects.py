"""Two projects on one runtime (issue 12, item 3): each runs its own code, keeps its own
endpoints, generations and metering, whatever the other one deploys.

Both projects are called "app" (the same slipstream.toml name, folders of the same name under
different parents), as two users' or two checkouts' copies would be; they reach one real
`slipstream serve` on loopback through the SDK's data channel, HTTP, `slipstream dev`, a real
script run and the language server's save path.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from project_shapes import ProjectDir, free_port, sdk_env

from slipstream.sdk.client import RuntimeClient, UnknownEndpoint
from slipstream.sdk.config import project_key
from tests.conftest import RunningRuntime, remove_project

APP = """
from slipstream import endpoint

WHO = "{who}"
VERSION = 0

@endpoint
def greet(name: str = "you") -> str:
    print(f"log: {{WHO}} greets {{name}}")
    return f"{{WHO}} v{{VERSION}} greets {{name}}"

@endpoint
def outer() -> str:
    return "outer of " + WHO + ": " + greet("nested")
{extra}
"""

ALPHA = """
@endpoint
def alpha() -> str:
    return "alpha of " + WHO
"""
BETA = """
@endpoint
def beta() -> str:
    return "beta of " + WHO
"""
GAMMA = """
@endpoint
def gamma() -> str:
    return "gamma of " + WHO
"""


def _h(rt: RunningRuntime) -> dict[str, str]:
    return {"Authorization": f"Bearer {rt.token}"}


class Two:
    """Alice's and Bob's checkouts of a project named "app", each with its own client."""

    def __init__(self, rt: RunningRuntime, base: Path) -> None:
        self.rt = rt
        self.a = ProjectDir((base / "alice" / "app").resolve())
        self.b = ProjectDir((base / "bob" / "app").resolve())
        self.clients: list[RuntimeClient] = []

    def write(self, proj: ProjectDir, who: str, *extra: str, version: int = 0) -> None:
        proj.write("slipstream.toml", '[project]\nname = "app"\n')
        text = APP.format(who=who, extra="".join(extra)).replace(
            "VERSION = 0", f"VERSION = {version}"
        )
        proj.write("main.py", text)

    def client(self, proj: ProjectDir) -> RuntimeClient:
        c = RuntimeClient(self.rt.url, self.rt.token, project=proj.key)
        self.clients.append(c)
        return c

    def call(self, proj: ProjectDir, name: str, *args: Any) -> Any:
        out = self.client(proj).call(name, None, args, {}, timeout=60)
        assert out.error is None, f"{name} failed: {out.error.type}: {out.error.message}"
        return out.value

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for proj in (self.a, self.b):
            remove_project(self.rt, proj.root)


@pytest.fixture()
def two(runtime: RunningRuntime, tmp_path: Path) -> Iterator[Two]:
    t = Two(runtime, tmp_path)
    yield t
    t.close()


def test_same_endpoint_name_runs_each_projects_own_code(two: Two) -> None:
    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice")
    two.write(b, "bob")
    assert a.key != b.key and a.key.startswith("app-") and b.key.startswith("app-")
    # a client that names no project learns it from its sync (as the editor's does per deploy)
    ca, cb = RuntimeClient(rt.url, rt.token), RuntimeClient(rt.url, rt.token)
    two.clients += [ca, cb]
    ra, rb = ca.sync(a.root), cb.sync(b.root)
    assert (ra.project, rb.project, ca.project, cb.project) == (a.key, b.key, a.key, b.key)

    # the SDK's binary channel, blocking and asyncio
    assert two.call(a, "greet", "x") == "alice v0 greets x"
    assert two.call(b, "greet", "x") == "bob v0 greets x"
    assert (
        asyncio.run(two.client(b).call_async("greet", None, ("y",), {})).value == "bob v0 greets y"
    )
    # an endpoint calling another from inside a worker stays in its own project
    assert two.call(a, "outer") == "outer of alice: alice v0 greets nested"
    assert two.call(b, "outer") == "outer of bob: bob v0 greets nested"
    # HTTP, as editors and scripts call
    assert two.client(a).call_json("greet", {"name": "j"})["result"] == "alice v0 greets j"
    assert two.client(b).call_json("greet", {"name": "j"})["result"] == "bob v0 greets j"

    # curl without a project: the name is ambiguous, and the answer says how to be precise
    r = httpx.post(f"{rt.url}/v1/endpoints/greet/call", json={}, headers=_h(rt))
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["type"] == "AmbiguousEndpoint" and sorted(err["projects"]) == sorted([a.key, b.key])
    assert f"/v1/projects/{a.key}/endpoints/greet/call" in err["message"]
    r = httpx.post(
        f"{rt.url}{err['routes'][err['projects'].index(b.key)]}",
        json={"kwargs": {"name": "curl"}},
        headers=_h(rt),
    )
    assert r.status_code == 200 and r.json()["result"] == "bob v0 greets curl"
    assert r.json()["project"] == b.key


def test_a_real_script_of_each_project_gets_its_own_endpoint(two: Two) -> None:
    """What a user does: `python script.py` in each checkout, both pointed at one runtime."""
    rt, a, b = two.rt, two.a, two.b
    for proj, who in ((a, "alice"), (b, "bob")):
        two.write(proj, who)
        proj.write(
            "run.py",
            'from main import greet\n\nif __name__ == "__main__":\n    print("->", greet("script"))\n',
        )
    env = sdk_env(SLIPSTREAM_RUNTIME_URL=rt.url, SLIPSTREAM_TOKEN=rt.token)
    procs = [
        subprocess.Popen(
            [sys.executable, "run.py"],
            cwd=p.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (a, b)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "-> alice v0 greets script" in outs[0][0]
    assert "-> bob v0 greets script" in outs[1][0]


def test_a_commit_never_removes_or_replaces_the_other_projects_endpoints(two: Two) -> None:
    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice", ALPHA)
    two.write(b, "bob", BETA)
    a.sync(rt)
    b.sync(rt)
    assert two.call(a, "alpha") == "alpha of alice" and two.call(b, "beta") == "beta of bob"

    # Bob drops beta, adds gamma and changes greet: only Bob's project changes
    two.write(b, "bob", GAMMA, version=1)
    res = b.sync(rt)
    assert res.generation == "g2" and sorted(e["name"] for e in res.endpoints) == [
        "gamma",
        "greet",
        "outer",
    ]
    assert two.call(a, "alpha") == "alpha of alice"
    assert two.call(a, "greet", "z") == "alice v0 greets z"
    assert two.call(b, "greet", "z") == "bob v1 greets z"
    assert two.call(b, "gamma") == "gamma of bob"
    with pytest.raises(UnknownEndpoint, match=f"no endpoint named 'beta' in project '{b.key}'"):
        two.client(b).call("beta", None, (), {})
    # Alice never had gamma: her project does not see Bob's
    with pytest.raises(UnknownEndpoint, match=f"no endpoint named 'gamma' in project '{a.key}'"):
        two.client(a).call("gamma", None, (), {})
    listing = httpx.get(f"{rt.url}/v1/endpoints", params={"project": a.key}, headers=_h(rt)).json()
    assert sorted(e["name"] for e in listing["endpoints"]) == ["alpha", "greet", "outer"]
    assert listing["projects"][0]["generation"] == "g1", "Bob's deploy moved Alice's generation"
    # names only one project defines still answer curl without a project
    r = httpx.post(f"{rt.url}/v1/endpoints/alpha/call", json={}, headers=_h(rt))
    assert r.status_code == 200 and r.json()["result"] == "alpha of alice"
    r = httpx.post(f"{rt.url}/v1/endpoints/beta/call", json={}, headers=_h(rt))
    assert r.status_code == 404 and "beta" in r.json()["error"]["message"]


def test_one_project_saves_repeatedly_while_the_other_is_called(two: Two) -> None:
    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice", ALPHA)
    two.write(b, "bob")
    a.sync(rt)
    b.sync(rt)
    results: list[str] = []
    errors: list[str] = []
    first = threading.Event()
    stop = threading.Event()

    def call_alice() -> None:
        sdk, http = two.client(a), two.client(a)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 2:
                    out = sdk.call("alpha" if i % 3 else "greet", None, (), {}, timeout=60)
                    if out.error is not None:
                        raise RuntimeError(f"{out.error.type}: {out.error.message}")
                    results.append(out.value)
                else:
                    reply = http.call_json("greet", {"name": "h"}, timeout=60)
                    if not reply.get("ok"):
                        raise RuntimeError(str(reply.get("error")))
                    results.append(reply["result"])
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(f"call {i}: {exc}")
            first.set()

    caller = threading.Thread(target=call_alice, name="alice-calls")
    caller.start()
    try:
        assert first.wait(60), "Alice's first call never finished"
        saves = 20
        for v in range(1, saves + 1):
            # Bob's saves change greet, and alternately add and drop an alpha of his own
            two.write(b, "bob", *([ALPHA] if v % 2 else []), version=v)
            res = b.sync(rt)
            assert res.generation == f"g{v + 1}" and not res.unchanged
            assert two.call(b, "greet", "b") == f"bob v{v} greets b"
        during = len(results)
    finally:
        stop.set()
        caller.join(60)
    assert errors == [], errors[:5]
    assert during >= 20, f"only {during} of Alice's calls overlapped Bob's saves"
    assert set(results) <= {"alpha of alice", "alice v0 greets you", "alice v0 greets h"}, set(
        results
    )
    assert {"alpha of alice", "alice v0 greets h"} <= set(results)


def test_status_listing_and_metrics_group_by_project(two: Two) -> None:
    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice")
    two.write(b, "bob", BETA)
    a.sync(rt)
    b.sync(rt)
    for _ in range(3):
        two.call(a, "greet")
    two.call(b, "greet")
    two.call(b, "beta")
    two.client(b).call_json("greet", {})

    listing = httpx.get(f"{rt.url}/v1/endpoints", headers=_h(rt)).json()
    mine = {p["key"]: p for p in listing["projects"] if p["key"] in (a.key, b.key)}
    assert mine[a.key]["endpoints"] == ["greet", "outer"] and mine[b.key]["endpoints"] == [
        "beta",
        "greet",
        "outer",
    ]
    assert mine[a.key]["spend"]["calls"] == 3 and mine[b.key]["spend"]["calls"] == 3
    assert mine[a.key]["name"] == "app" and mine[a.key]["generation"] == "g1"
    assert mine[a.key]["environments"] == ["base"] == mine[b.key]["environments"]
    base = next(e for e in listing["runtime"]["environments"] if e["key"] == "base")
    assert {a.key, b.key} <= set(base["projects"]), "the environment does not say who uses it"
    by = {(e["project"], e["name"]): e["stats"]["calls"] for e in listing["endpoints"]}
    assert by[(a.key, "greet")] == 3 and by[(b.key, "greet")] == 2 and by[(b.key, "beta")] == 1
    only_b = httpx.get(f"{rt.url}/v1/endpoints", params={"project": b.key}, headers=_h(rt)).json()
    assert {e["project"] for e in only_b["endpoints"]} == {b.key} and only_b["spend"]["calls"] == 3
    assert (
        httpx.get(
            f"{rt.url}/v1/endpoints", params={"project": "nobody-00000000"}, headers=_h(rt)
        ).status_code
        == 404
    )

    metrics = httpx.get(f"{rt.url}/metrics", headers=_h(rt)).text
    assert f'slipstream_calls_total{{endpoint="greet",gpu="CPU",project="{a.key}"}} 3' in metrics
    assert f'slipstream_calls_total{{endpoint="greet",gpu="CPU",project="{b.key}"}} 2' in metrics
    health = httpx.get(f"{rt.url}/health").json()
    assert {(p["key"], p["endpoints"]) for p in health["projects"]} >= {(a.key, 2), (b.key, 3)}

    # `slipstream status` in Alice's folder: one block per project, hers marked
    env = sdk_env(SLIPSTREAM_RUNTIME_URL=rt.url, SLIPSTREAM_TOKEN=rt.token)
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "status"],
        cwd=a.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    blocks: dict[str, list[str]] = {}
    current = None
    for line in out.stdout.splitlines():
        m = re.match(r"project (\S+)\s+generation (\S+)\s+calls (\d+)", line)
        if m:
            current = m.group(1)
            blocks[current] = [line]
        elif current and line.startswith("  "):
            blocks[current].append(line.split()[0])
    assert sorted(blocks[a.key][1:]) == ["greet", "outer"], out.stdout
    assert sorted(blocks[b.key][1:]) == ["beta", "greet", "outer"], out.stdout
    assert "(this folder)" in blocks[a.key][0] and "(this folder)" not in blocks[b.key][0]
    assert "calls 3" in blocks[a.key][0] and "calls 3" in blocks[b.key][0]


def test_logs_follow_one_project(two: Two) -> None:
    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice")
    two.write(b, "bob")
    a.sync(rt)
    b.sync(rt)
    two.call(a, "greet", "first")
    two.call(b, "greet", "first")
    two.call(a, "greet", "last")
    seen = []
    bound = threading.Timer(30, (stop := threading.Event()).set)  # a bound on a hang, not a wait
    bound.start()
    try:
        for e in two.client(a).logs(project=a.key, backlog=2000, stop=stop):
            seen.append(e)
            if "alice greets last" in e.get("text", ""):
                break
    finally:
        bound.cancel()
    texts = [e.get("text", "") for e in seen]
    assert any("alice greets last" in t for t in texts), texts
    assert any("alice greets first" in t for t in texts) and not any("bob" in t for t in texts), (
        texts
    )
    assert {e.get("project") for e in seen} == {a.key}


def test_a_refused_deploy_of_one_project_leaves_the_other_alone(two: Two) -> None:
    from slipstream.protocol.errors import DeployError

    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice")
    a.sync(rt)
    b.write("slipstream.toml", '[project]\nname = "app"\n')
    b.write(
        "main.py",
        "from slipstream import endpoint\n\n@endpoint\ndef greet():\n    return 1\n\nraise RuntimeError('broken at import')\n",
    )
    with pytest.raises(DeployError, match="broken at import"):
        b.sync(rt)
    listed = httpx.get(f"{rt.url}/v1/endpoints", headers=_h(rt)).json()
    assert b.key not in [p["key"] for p in listed["projects"]], (
        "a project that never deployed is listed"
    )
    assert [e["project"] for e in listed["endpoints"] if e["name"] == "greet"] == [a.key]
    r = httpx.post(f"{rt.url}/v1/endpoints/greet/call", json={}, headers=_h(rt))
    assert r.status_code == 200 and r.json()["result"] == "alice v0 greets you"
    # Bob fixes it; then breaks it again: his last good code keeps serving, Alice's untouched
    two.write(b, "bob")
    good = b.sync(rt).generation
    b.edit("main.py", "VERSION = 0", "VERSION = 1\nraise RuntimeError('broken again')")
    with pytest.raises(DeployError, match="broken again"):
        b.sync(rt)
    assert two.call(b, "greet", "q") == "bob v0 greets q"
    assert two.call(a, "greet", "q") == "alice v0 greets q"
    gens = {
        p["key"]: p["generation"]
        for p in httpx.get(f"{rt.url}/v1/projects", headers=_h(rt)).json()["projects"]
    }
    assert gens[b.key] == good and gens[a.key] == "g1"


def test_unknown_and_malformed_project_keys_are_refused_clearly(two: Two) -> None:
    rt, a = two.rt, two.a
    two.write(a, "alice")
    a.sync(rt)
    r = httpx.post(
        f"{rt.url}/v1/projects/nobody-00000000/endpoints/greet/call", json={}, headers=_h(rt)
    )
    assert r.status_code == 404 and "no project 'nobody-00000000'" in r.json()["error"]["message"]
    with pytest.raises(UnknownEndpoint, match="sync it first"):
        RuntimeClient(rt.url, rt.token, project="nobody-00000000").call("greet", None, (), {})
    r = httpx.post(
        f"{rt.url}/v1/generations",
        json={"files": {}, "entries": [], "project": "../evil"},
        headers=_h(rt),
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadProject"
    assert "letters, digits" in r.json()["error"]["message"]


def test_project_key_names_the_project_and_tells_checkouts_apart(tmp_path: Path) -> None:
    one = ProjectDir((tmp_path / "x" / "app").resolve())
    two = ProjectDir((tmp_path / "y" / "app").resolve())
    for p in (one, two):
        p.write("slipstream.toml", '[project]\nname = "My App!"\n')
    assert one.key != two.key
    assert re.fullmatch(r"My-App-[0-9a-f]{8}", one.key), one.key
    assert project_key(str(one.root / "sub" / "..")) == one.key, (
        "the same root, however spelled, is the same project"
    )


@pytest.mark.slow
def test_slipstream_dev_calls_its_own_project(two: Two) -> None:
    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice")
    two.write(b, "bob")
    b.sync(rt)
    port = free_port()
    env = sdk_env(SLIPSTREAM_TOKEN=rt.token)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slipstream",
            "dev",
            str(a.root),
            "--port",
            str(port),
            "--runtime",
            rt.url,
        ],
        cwd=a.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "serving" in line:
                break
        else:
            pytest.fail("`slipstream dev` exited before serving")
        _wait_listening(port)  # it prints "serving" just before its HTTP server binds
        r = httpx.post(
            f"http://127.0.0.1:{port}/greet", json={"name": "dev"}, timeout=60, trust_env=False
        )
        assert r.status_code == 200, r.text
        assert r.json()["result"] == "alice v0 greets dev"
        assert two.call(b, "greet", "dev") == "bob v0 greets dev"
    finally:
        proc.terminate()
        proc.wait(20)


def _wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# --- the language server's save path -------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))


async def _next(
    client: Any, method: str, since: int, timeout: float = 120, **match: Any
) -> dict[str, Any]:
    return await client.next_note(method, timeout=timeout, since=since, **match)


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="function")
async def test_editor_saves_and_runs_stay_in_their_project(two: Two) -> None:
    from daemon_client import start_daemon
    from lsprotocol import types

    rt, a, b = two.rt, two.a, two.b
    two.write(a, "alice", ALPHA)
    two.write(b, "bob", BETA)
    await asyncio.to_thread(b.sync, rt)
    editor = await start_daemon(
        a.root, {"SLIPSTREAM_RUNTIME_URL": rt.url, "SLIPSTREAM_TOKEN": rt.token}
    )
    try:
        uri = (a.root / "main.py").as_uri()
        editor.open(a.root / "main.py")
        for version in (1, 2):  # two saves in the editor, each a deploy of Alice's project only
            seen = len(editor.notes_of("slipstream/deployResult"))
            status_seen = len(editor.notes_of("slipstream/runtimeStatus"))
            two.write(a, "alice", ALPHA, version=version)
            text = (a.root / "main.py").read_text()
            editor.replace(uri, text)
            editor.text_document_did_save(
                types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
            )
            deployed = await _next(editor, "slipstream/deployResult", seen)
            assert deployed["ok"] is True, deployed
            assert await asyncio.to_thread(two.call, b, "beta") == "beta of bob"
            assert await asyncio.to_thread(two.call, b, "greet", "sdk") == "bob v0 greets sdk"
        seen = len(editor.notes_of("slipstream/runResult"))
        reply = await editor.command(
            "slipstream.server.run", {"uri": uri, "endpoint": "greet", "kwargs": {"name": "lsp"}}
        )
        result = await _next(editor, "slipstream/runResult", seen, runId=reply["runId"])
        assert result["status"] == "ok", result
        assert result["text"] == "alice v2 greets lsp"
        listing = await asyncio.to_thread(
            lambda: httpx.get(
                f"{rt.url}/v1/endpoints", params={"project": a.key}, headers=_h(rt)
            ).json()
        )
        assert listing["projects"][0]["generation"] == deployed["generation"]
        assert sorted(e["name"] for e in listing["endpoints"]) == ["alpha", "greet", "outer"]
        # the editor's status counts its project's endpoints, not Bob's on the same runtime
        status = await _next(
            editor, "slipstream/runtimeStatus", status_seen, timeout=30, endpoints=3
        )
        assert status["connected"] is True
    finally:
        await editor.shutdown_session()
        await editor.stop()


@pytest.mark.slow
def test_more_projects_than_live_importers_all_keep_deploying_right(
    runtime: RunningRuntime, tmp_path: Path
) -> None:
    """Each project has its own import process; only MAX_SCANNERS stay live, and a project whose
    importer was stopped still deploys its new code right on its next save."""
    from slipstream.server.service import MAX_SCANNERS

    projs = [ProjectDir((tmp_path / f"user{i}" / "app").resolve()) for i in range(MAX_SCANNERS + 1)]
    clients: list[RuntimeClient] = []

    def greet(p: ProjectDir) -> str:
        clients.append(RuntimeClient(runtime.url, runtime.token, project=p.key))
        out = clients[-1].call("greet", None, (), {}, timeout=60)
        assert out.error is None, out.error.message
        return out.value

    try:
        for i, p in enumerate(projs):
            p.write("slipstream.toml", '[project]\nname = "app"\n')
            p.write("main.py", APP.format(who=f"user{i}", extra=""))
            p.sync(runtime)
        listed = httpx.get(f"{runtime.url}/v1/projects", headers=_h(runtime)).json()["projects"]
        live = [q["key"] for q in listed if q["scanner"]]
        assert len(live) <= MAX_SCANNERS and projs[-1].key in live
        assert projs[0].key not in live, "the least recently deployed project kept its importer"
        projs[0].edit("main.py", "VERSION = 0", "VERSION = 7")
        res = projs[0].sync(runtime)
        assert not res.unchanged and res.generation == "g2"
        assert greet(projs[0]) == "user0 v7 greets you"
        assert [greet(p) for p in projs[1:]] == [
            f"user{i} v0 greets you" for i in range(1, len(projs))
        ]
    finally:
        for c in clients:
            c.close()
        for p in projs:
            remove_project(runtime, p.root)
