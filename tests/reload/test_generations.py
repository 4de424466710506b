"""Live means live: a save lands while calls run. Each call says the generation it ran on, a map
says which items ran on which, and a deploy never stops the calls a variant is running."""

from __future__ import annotations

import concurrent.futures as cf
import time
from pathlib import Path

import httpx
import pytest

from slipstream.sdk.config import project_key
from tests.reliability.helpers import HANG_BOUND_S, auth

APP = """
import os, time
from slipstream import endpoint

VERSION = "{version}"

@endpoint
def slow(started=None, release=None):
    if started:  # say it runs, then wait to be released
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    return VERSION
"""


@pytest.fixture()
def proj(runtime, project_factory):
    return project_factory(runtime, {"gens_app.py": APP.format(version="v1")})


def _wait_for(path: Path, fut: cf.Future) -> None:
    deadline = time.monotonic() + HANG_BOUND_S
    while not path.exists():
        assert time.monotonic() < deadline and not fut.done(), fut
        time.sleep(0.01)


def test_a_call_running_across_a_save_says_the_generation_it_ran_on(proj, tmp_path):
    app = proj.module("gens_app")
    assert app.slow() == "v1"
    g1 = app.slow.last_call.generation
    assert g1 == proj.sync().generation
    started, release = tmp_path / "started", tmp_path / "release"
    with cf.ThreadPoolExecutor(1) as ex:
        inflight = ex.submit(app.slow, str(started), str(release))
        _wait_for(started, inflight)
        proj.write("gens_app.py", APP.format(version="v2"))
        g2 = proj.sync().generation
        assert g2 != g1
        release.touch()
        assert inflight.result(timeout=HANG_BOUND_S) == "v1", "it ran the old code"
    assert app.slow.last_call.generation == g1, "and says so"
    assert app.slow() == "v2"
    assert app.slow.last_call.generation == g2


def test_an_http_call_running_across_a_save_says_the_generation_it_ran_on(
    proj, runtime, tmp_path
):
    app = proj.module("gens_app")
    app.slow()
    g1 = proj.sync().generation
    started, release = tmp_path / "started", tmp_path / "release"
    url = f"{runtime.url}/v1/projects/{project_key(proj.root)}/endpoints/slow/call"

    def call(**kwargs: str) -> dict:
        r = httpx.post(url, json={"kwargs": kwargs}, headers=auth(runtime), timeout=HANG_BOUND_S)
        assert r.status_code == 200, r.text
        return r.json()

    with cf.ThreadPoolExecutor(1) as ex:
        inflight = ex.submit(call, started=str(started), release=str(release))
        _wait_for(started, inflight)
        proj.write("gens_app.py", APP.format(version="v2"))
        g2 = proj.sync().generation
        release.touch()
        reply = inflight.result(timeout=HANG_BOUND_S)
    assert (reply["result"], reply["generation"]) == ("v1", g1)
    reply = call()
    assert (reply["result"], reply["generation"]) == ("v2", g2)
