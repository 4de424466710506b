"""Live means live: while a dev session is attached its endpoints keep a warm worker past their
idle_timeout (and so their keep() models); a long-lived process calls what is saved."""

from __future__ import annotations

import importlib
import time

import httpx
import pytest

from slipstream.sdk import session as sdk_session
from slipstream.sdk import sync as sdk_sync
from slipstream.sdk.config import project_key
from tests.conftest import start_runtime

LEASE_S = 1.5

HELD = """
import os, time
from slipstream import endpoint, keep

@endpoint(workers=(0, 1), idle_timeout=1)
class Held:
    def setup(self):
        self.model = keep("model", lambda: {"pid": os.getpid(), "loaded_at": time.time()})

    def ask(self):
        return self.model
"""

EDITED = """
from slipstream import endpoint

@endpoint
def answer():
    return {version}
"""


@pytest.fixture(scope="module")
def leased():
    """A runtime whose session lease is short (a client's heartbeats come every third of it)."""
    rt = start_runtime("--gpu-fallback", "--session-lease", f"{LEASE_S}")
    yield rt
    rt.stop()


def _get(rt, path):
    r = httpx.get(f"{rt.url}{path}", headers={"Authorization": f"Bearer {rt.token}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def _workers(rt, root):
    return _get(rt, f"/v1/projects/{project_key(root)}/endpoints/Held")["pool"]["workers"]


def _sessions(rt, root):
    projects = _get(rt, "/v1/projects")["projects"]
    return next(p for p in projects if p["key"] == project_key(root))["sessions"]


def _until(what, check, bound=20.0):
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic()


def test_an_attached_projects_worker_and_its_model_outlive_the_idle_timeout(
    leased, project_factory
):
    proj = project_factory(leased, {"held.py": HELD}, name="held")
    app = proj.module("held")
    first = app.Held().ask()
    assert [s["client"] for s in _sessions(leased, proj.root)] == ["sdk"], (
        "the script's session is attached"
    )
    time.sleep(3)  # three idle timeouts, two leases: only heartbeats keep it
    workers = _workers(leased, proj.root)
    assert [w["pid"] for w in workers] == [first["pid"]], "the warm worker is still there"
    assert app.Held().ask() == first, "same worker, and keep() did not load the model again"

    ended = time.monotonic()
    sdk_session.current().detach()  # the session ends: now the idle clock runs
    assert _sessions(leased, proj.root) == []
    gone = _until(
        "the worker to stop after the session ended", lambda: not _workers(leased, proj.root)
    )
    assert gone - ended >= 0.9, "it stayed its idle_timeout after the session ended"
    again = app.Held().ask()
    assert again["pid"] != first["pid"] and again["loaded_at"] > first["loaded_at"]


def test_a_session_that_stops_heartbeating_is_dropped_after_its_lease(leased, project_factory):
    proj = project_factory(leased, {"held.py": HELD}, name="crashy")
    app = proj.module("held")
    first = app.Held().ask()
    sdk_session.current().detach()
    # a client that attached and then vanished (a crashed laptop): one PUT, no heartbeat, no DELETE
    r = httpx.put(
        f"{leased.url}/v1/projects/{project_key(proj.root)}/sessions/vanished",
        json={"client": "dev"},
        headers={"Authorization": f"Bearer {leased.token}"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["lease_s"] == LEASE_S
    attached = time.monotonic()
    assert [s["client"] for s in _sessions(leased, proj.root)] == ["dev"]
    assert [w["pid"] for w in _workers(leased, proj.root)] == [first["pid"]]
    dropped = _until("the lease to run out", lambda: _sessions(leased, proj.root) == [])
    assert dropped - attached >= LEASE_S * 0.9
    gone = _until("the worker to stop", lambda: not _workers(leased, proj.root))
    assert gone - attached >= LEASE_S + 0.9, "lease, then idle_timeout"


def test_a_long_lived_process_calls_what_is_saved_without_dev(
    runtime, project_factory, monkeypatch
):
    proj = project_factory(runtime, {"edited.py": EDITED.format(version=1)}, name="edited")
    app = proj.module("edited")
    assert app.answer() == 1
    proj.write("edited.py", EDITED.format(version=2))
    time.sleep(1.1)  # a person's pause between saving and calling again
    monkeypatch.syspath_prepend(str(proj.root))
    app = importlib.reload(app)
    assert app.answer() == 2, "the runtime runs the saved file, as the local copy does"


def test_calls_with_no_edit_do_not_sync_or_scan_each_time(runtime, project_factory, monkeypatch):
    proj = project_factory(runtime, {"edited.py": EDITED.format(version=1)}, name="loop")
    app = proj.module("edited")
    assert app.answer() == 1
    syncs, scans = [], []
    sync_project, scan = sdk_sync.sync_project, sdk_sync.scan_stamp
    monkeypatch.setattr(
        sdk_sync, "sync_project", lambda *a, **k: syncs.append(1) or sync_project(*a, **k)
    )
    monkeypatch.setattr(sdk_sync, "scan_stamp", lambda *a, **k: scans.append(1) or scan(*a, **k))
    started = time.monotonic()
    for _ in range(40):
        assert app.answer() == 1
    time.sleep(1.1)
    assert app.answer() == 1
    took = time.monotonic() - started
    assert syncs == [], "nothing changed: nothing synced"
    assert 1 <= len(scans) <= took / sdk_session.RESCAN_S + 1, (
        "the tree is stat'ed once per interval, not per call"
    )


def test_a_refused_save_keeps_the_last_good_code_serving_and_is_said_once(
    runtime, project_factory, capfd
):
    proj = project_factory(runtime, {"edited.py": EDITED.format(version=1)}, name="refused")
    app = proj.module("edited")
    assert app.answer() == 1
    proj.write("edited.py", EDITED.format(version=2) + "\ndef oops(:\n")  # does not import
    time.sleep(1.1)
    for _ in range(3):
        assert app.answer() == 1, "the last code that deployed keeps serving"
        time.sleep(0.6)
    err = capfd.readouterr().err
    assert err.count("the saved code was refused") == 1, err
    assert "edited.py" in err and "SyntaxError" in err and "g1" in err, err
