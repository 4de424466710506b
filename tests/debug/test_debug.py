"""Debugging endpoint calls on a real runtime (`slipstream serve` on loopback, real workers under
debugpy), at the Debug Adapter Protocol level: a breakpoint set by local path stops the worker
at that line with its variables, Continue brings the result back from the same worker (its
keep() model still loaded), an uncaught exception stops post-mortem at the raising line, other
calls are served meanwhile, ending a session mid-call replaces the worker, and nobody without
the token can attach."""

from __future__ import annotations

import os

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from slipstream.sdk import debug as sdk_debug
from slipstream.sdk.config import project_key
from tests.conftest import start_runtime
from tests.debug.dap import DapClient
from tests.reliability.helpers import HANG_BOUND_S, auth, wait_for

APP = """
import os, time
from slipstream import endpoint, keep

LOADS = []

def load_model():
    LOADS.append(time.time())
    return {"pid": os.getpid(), "weights": [1, 2, 3]}

@endpoint(workers=(1, 2))
class Model:
    def setup(self):
        self.model = keep("tiny-model", load_model)

    def predict(self, x: int) -> dict:
        scaled = x * 2  # BP-PREDICT
        return {"y": scaled + sum(self.model["weights"]), "pid": os.getpid(), "loads": len(LOADS)}

    def boom(self, x: int) -> int:
        z = x + 1
        raise ValueError(f"bad input {z}")  # RAISES
"""


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


@pytest.fixture(scope="module")
def rt():
    r = start_runtime("--gpu-fallback")
    yield r
    r.stop()


@pytest.fixture()
def proj(rt, project_factory):
    p = project_factory(rt, {"app.py": APP})
    p.sync()
    return p


def call(rt, proj, method: str, **kwargs):
    r = httpx.post(
        f"{rt.url}/v1/projects/{project_key(proj.root)}/endpoints/Model/call",
        params={"method": method},
        json={"kwargs": kwargs},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    )
    return r.json()


def workers(rt, proj) -> list[dict]:
    info = httpx.get(
        f"{rt.url}/v1/projects/{project_key(proj.root)}/endpoints/Model",
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    ).json()
    return info["pool"]["workers"]


def debug(rt, proj, method: str, **kwargs) -> dict:
    client = rt.client()
    return sdk_debug.start(client, "Model", kwargs, method, project=project_key(proj.root))


def ws(rt, session: dict, token: str | None = "") -> DapClient:
    return DapClient.websocket(
        sdk_debug.ws_url(rt.client(), session["session"]), rt.token if token == "" else token
    )


def mappings(proj, session) -> list[dict]:
    return [{"localRoot": str(proj.root.resolve()), "remoteRoot": session["remoteRoot"]}]


def outcome(rt, session) -> dict:
    return sdk_debug.result(rt.client(), session["call"], wait=HANG_BOUND_S)


def test_a_breakpoint_in_the_local_file_stops_the_worker_and_continue_returns_the_result(rt, proj):
    warm = call(rt, proj, "predict", x=1)
    assert warm["ok"], warm
    here = proj.root / "app.py"
    bp = line_of(APP, "BP-PREDICT")
    session = debug(rt, proj, "predict", x=21)
    assert session["remoteRoot"] and session["remoteRoot"] != str(proj.root), (
        "the worker runs the runtime's copy"
    )
    assert [w["state"] for w in workers(rt, proj) if w["pid"] == warm["result"]["pid"]] == [
        "debugging"
    ]
    # through the SDK's relay on 127.0.0.1, as the editor connects: its attach gets the path mappings
    relay = sdk_debug.Relay(rt.client(), session, local_root=str(proj.root)).start()
    dap = DapClient.tcp(relay.port)
    try:
        dap.start(breakpoints={str(here): [bp]})
        stopped = dap.event("stopped")
        assert stopped["reason"] == "breakpoint"
        frame = dap.top_frame(stopped["threadId"])
        assert (frame["source"]["path"], frame["line"]) == (str(here.resolve()), bp), (
            "shown at the local file's line"
        )
        assert frame["name"] == "predict"
        assert dap.locals(frame["id"])["x"] == "21"
        assert (
            dap.request(
                "evaluate",
                expression="x * 3 + len(self.model['weights'])",
                frameId=frame["id"],
                context="repl",
            )["result"]
            == "66"
        )
        nxt = dap.request("next", threadId=stopped["threadId"])
        assert nxt is not None
        frame = dap.top_frame(dap.event("stopped")["threadId"])
        assert frame["line"] == bp + 1 and dap.locals(frame["id"])["scaled"] == "42"
        dap.request("continue", threadId=stopped["threadId"])
        dap.event("terminated")
        dap.request("disconnect")
    finally:
        dap.close()
    done = outcome(rt, session)
    assert done["status"] == "done" and done["result"] == {
        "y": 48,
        "pid": warm["result"]["pid"],
        "loads": 1,
    }, done
    # the session is over: the same worker serves calls again, its model loaded once
    wait_for(
        lambda: (
            [w["state"] for w in workers(rt, proj)]
            and all(w["state"] != "debugging" for w in workers(rt, proj))
        ),
        "the worker to leave the debugging state",
    )
    again = call(rt, proj, "predict", x=2)
    assert (
        again["ok"]
        and again["result"]["pid"] == warm["result"]["pid"]
        and again["result"]["loads"] == 1
    )
    relay.close()


def test_without_the_token_nobody_attaches_and_the_session_stays_open(rt, proj):
    session = debug(rt, proj, "predict", x=5)
    for token in (None, "wrong-token"):
        with pytest.raises(InvalidStatus) as refused:
            ws(rt, session, token=token)
        assert refused.value.response.status_code == 403
    assert (
        httpx.post(
            f"{rt.url}/v1/projects/{project_key(proj.root)}/endpoints/Model/debug",
            json={"kwargs": {"x": 1}},
            timeout=HANG_BOUND_S,
        ).status_code
        == 401
    )
    assert httpx.get(f"{rt.url}/v1/debug", timeout=HANG_BOUND_S).status_code == 401
    # the session was not disturbed: the right token attaches, and the call runs to its result
    dap = ws(rt, session)
    try:
        dap.start(pathMappings=mappings(proj, session))
        dap.event("terminated")
    finally:
        dap.close()
    assert outcome(rt, session)["result"]["y"] == 16


def test_an_uncaught_exception_stops_at_the_raising_line_with_its_variables(rt, proj):
    here = proj.root / "app.py"
    session = debug(rt, proj, "boom", x=41)
    dap = ws(rt, session)
    try:
        dap.start(uncaught=True, pathMappings=mappings(proj, session))
        stopped = dap.event("stopped")
        assert stopped["reason"] == "exception" and "bad input 42" in stopped.get("description", "")
        frame = dap.top_frame(stopped["threadId"])
        assert (frame["source"]["path"], frame["line"]) == (
            str(here.resolve()),
            line_of(APP, "RAISES"),
        )
        assert dap.locals(frame["id"])["z"] == "42"
        dap.request("continue", threadId=stopped["threadId"])
        dap.event("terminated")
    finally:
        dap.close()
    failed = outcome(rt, session)
    assert failed["status"] == "failed" and failed["error"]["type"] == "ValueError"


def test_other_calls_are_served_while_a_worker_is_stopped_at_a_breakpoint(rt, proj):
    first = call(rt, proj, "predict", x=1)
    session = debug(rt, proj, "predict", x=3)
    dap = ws(rt, session)
    try:
        dap.start(
            breakpoints={str(proj.root / "app.py"): [line_of(APP, "BP-PREDICT")]},
            pathMappings=mappings(proj, session),
        )
        stopped = dap.event("stopped")
        meanwhile = call(rt, proj, "predict", x=4)  # the pool scales to its second worker
        assert meanwhile["ok"] and meanwhile["result"]["pid"] != first["result"]["pid"]
        dap.request("continue", threadId=stopped["threadId"])
        dap.event("terminated")
        # the call is done but the debugger is still attached: the worker still is the session's
        held = call(rt, proj, "predict", x=5)
        assert held["ok"] and held["result"]["pid"] == meanwhile["result"]["pid"]
    finally:
        dap.close()
    assert outcome(rt, session)["result"]["pid"] == first["result"]["pid"]


def test_ending_the_session_mid_call_replaces_the_worker_and_the_call_fails_saying_why(rt, proj):
    warm = call(rt, proj, "predict", x=1)
    session = debug(rt, proj, "predict", x=3)
    dap = ws(rt, session)
    dap.start(
        breakpoints={str(proj.root / "app.py"): [line_of(APP, "BP-PREDICT")]},
        pathMappings=mappings(proj, session),
    )
    dap.event("stopped")
    dap.close()  # the editor closed (or the user pressed Stop) with the call stopped at the breakpoint
    failed = outcome(rt, session)
    assert (
        failed["status"] in ("failed", "cancelled")
        and "debug session ended" in failed["error"]["message"]
    ), failed
    wait_for(lambda: not _alive(session["pid"]), "the stopped worker to be gone")
    after = call(rt, proj, "predict", x=2)
    assert after["ok"] and after["result"]["pid"] != session["pid"]
    ended = httpx.get(
        f"{rt.url}/v1/debug/{session['session']}", headers=auth(rt), timeout=HANG_BOUND_S
    ).json()
    assert ended["state"] == "ended" and "disconnected" in ended["ended"]
    assert warm["ok"]


def test_path_mappings_hold_after_a_hot_reload(rt, proj):
    warm = call(rt, proj, "predict", x=1)
    first = debug(rt, proj, "predict", x=1)
    dap = ws(rt, first)
    dap.start(pathMappings=mappings(proj, first))
    dap.event("terminated")
    dap.close()
    outcome(rt, first)
    edited = APP.replace(
        "        scaled = x * 2  # BP-PREDICT",
        "        note = 'edited'\n        scaled = x * 2  # BP-PREDICT",
    )
    proj.write("app.py", edited)
    proj.sync()
    session = debug(rt, proj, "predict", x=7)
    assert (
        session["remoteRoot"] == first["remoteRoot"] and session["pid"] == warm["result"]["pid"]
    ), "hot-reloaded in place"
    dap = ws(rt, session)
    try:
        dap.start(
            breakpoints={str(proj.root / "app.py"): [line_of(edited, "BP-PREDICT")]},
            pathMappings=mappings(proj, session),
        )
        stopped = dap.event("stopped")
        frame = dap.top_frame(stopped["threadId"])
        assert (
            frame["line"] == line_of(edited, "BP-PREDICT")
            and dap.locals(frame["id"])["note"] == "'edited'"
        )
        dap.request("continue", threadId=stopped["threadId"])
        dap.event("terminated")
    finally:
        dap.close()
    assert outcome(rt, session)["result"]["y"] == 20


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bad_arguments_fail_the_debug_request_at_once_with_the_usual_message(rt, proj):
    warm = call(rt, proj, "predict", x=1)
    with pytest.raises(Exception) as refused:
        debug(rt, proj, "predict", x="not a number")
    assert "could not debug Model.predict" in str(
        refused.value
    ) and "x: Input should be a valid integer" in str(refused.value)
    listed = httpx.get(f"{rt.url}/v1/debug", headers=auth(rt), timeout=HANG_BOUND_S).json()[
        "sessions"
    ]
    assert not [
        s for s in listed if s["state"] != "ended" and s["project"] == project_key(proj.root)
    ]
    again = call(rt, proj, "predict", x=1)
    assert again["ok"] and again["result"]["pid"] == warm["result"]["pid"], (
        "the same worker serves calls again"
    )
    assert [w["state"] for w in workers(rt, proj)] != ["debugging"]
